//! Everything gup-trace knows about differences between kernels: which GUP symbols exist, the
//! values BTF gives us (FOLL_PIN), which attach method each hook can use on this kernel, and the
//! capability report that explains it to the user.
//!
//! Hooks are chosen by probing symbols and trying attach methods, never by version number:
//! stable kernels backport renames, and distributions differ in what they allow.

mod layout;
mod mm_owner;

use std::{collections::HashSet, fmt, fs, io, path::Path, time::Instant};

use anyhow::{Context as _, Result};
use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
};
use gup_trace_common::{CmaOffsets, FolioLayout, Hook, HookClass, MmOwnerLayout};
pub use layout::{LayoutError, page_size, unread_layout};
use serde::Serialize;

use crate::symbols::{self, KallsymsLine};

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// The perf PMU aya creates kprobes through; absent when the kernel has no CONFIG_KPROBES.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// What the running kernel offers, gathered once at start-up.
pub struct KernelFacts {
    pub release: String,
    /// Function symbols in /proc/kallsyms (only the ones gup-trace cares about).
    symbols: HashSet<String>,
    /// vmlinux BTF, needed by fentry/fexit; None when the kernel has none.
    btf: Option<Btf>,
    btf_error: Option<String>,
    pub foll_pin: FlagValue,
    pub foll: FollFlags,
    /// Where the per-folio hooks read a folio's counts; an error turns those hooks off.
    pub folio_layout: Result<FolioLayout, LayoutError>,
    /// Where the owner of a GUP call's memory is read; an error credits pins to the caller.
    pub mm_owner: Result<MmOwnerLayout, LayoutError>,
    /// Offset of `success` in the mmap_lock_acquire_returned record; 0 when unknown.
    pub lock_success_offset: u32,
    /// Offsets of `pid` and `clone_flags` in the task_newtask record; 0 when unknown.
    pub newtask_offsets: (u32, u32),
    /// Offsets of `succeeded`, `failed`, `reason` in mm_migrate_pages' record; 0 when unknown.
    pub migrate_offsets: [u32; 3],
    /// Offsets of `start_pfn`, `end_pfn`, `fin_pfn` in test_pages_isolated's record.
    pub isolated_offsets: [u32; 3],
    /// Where the cma tracepoints keep their fields (zero where the kernel has none: no CMA).
    pub cma_offsets: CmaOffsets,
    /// `enum migrate_reason` from BTF (`MR_COMPACTION`, ...): the names of
    /// mm_migrate_pages' reasons, which moved between kernels (MR_DEMOTION, MR_DAMON).
    pub migrate_reasons: Vec<(String, u32)>,
    kprobe_pmu: bool,
}

/// A kernel constant and where its value came from.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FlagValue {
    pub value: u32,
    pub source: &'static str,
}

/// Tracepoints attach through tracefs. Minimal systems (and this project's test VMs) boot
/// without it mounted; as root we can mount it ourselves rather than fail.
fn ensure_tracefs() {
    let target = c"/sys/kernel/tracing";
    if TRACEFS_ROOTS
        .iter()
        .any(|root| Path::new(&format!("{root}/events")).exists())
    {
        return;
    }
    // SAFETY: valid NUL-terminated strings; failure is reported by the attach that follows.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        log::warn!(
            "cannot mount tracefs on /sys/kernel/tracing: {}",
            io::Error::last_os_error()
        );
    }
}

impl KernelFacts {
    pub fn probe() -> Result<KernelFacts> {
        ensure_tracefs();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("cannot read /proc/sys/kernel/osrelease: is /proc mounted?")?
            .trim()
            .to_string();
        let kallsyms = Kallsyms::read().context("cannot read /proc/kallsyms")?;
        let (btf, btf_error) = match Btf::from_sys_fs() {
            Ok(btf) => (Some(btf), None),
            Err(e) => (None, Some(format!("kernel lacks BTF ({VMLINUX_BTF}: {e})"))),
        };
        // aya's Btf serves the fentry loader; btf-rs answers questions about types, which
        // aya-obj keeps private.
        let types = btf_rs::Btf::from_file(VMLINUX_BTF).ok();
        let foll = FollFlags::read(types.as_ref());
        let foll_pin = FlagValue {
            value: foll.value("FOLL_PIN").unwrap_or(0x40000),
            source: foll.source,
        };
        let folio_layout = match (&types, btf_error.as_deref()) {
            (Some(types), _) => layout::read(types, kallsyms.variables),
            (None, reason) => Err(LayoutError(
                reason.unwrap_or("kernel lacks BTF").to_string(),
            )),
        };
        let mm_owner = match &types {
            Some(types) => mm_owner::read(types),
            None => Err(LayoutError(
                btf_error
                    .as_deref()
                    .unwrap_or("kernel lacks BTF")
                    .to_string(),
            )),
        };
        Ok(KernelFacts {
            release,
            mm_owner,
            symbols: kallsyms.functions,
            btf,
            btf_error,
            foll_pin,
            foll,
            folio_layout,
            lock_success_offset: tracepoint_field_offset(
                "mmap_lock/mmap_lock_acquire_returned",
                "success",
            )
            .unwrap_or(0),
            newtask_offsets: (
                tracepoint_field_offset("task/task_newtask", "pid").unwrap_or(0),
                tracepoint_field_offset("task/task_newtask", "clone_flags").unwrap_or(0),
            ),
            migrate_offsets: ["succeeded", "failed", "reason"]
                .map(|f| tracepoint_field_offset("migrate/mm_migrate_pages", f).unwrap_or(0)),
            isolated_offsets: ["start_pfn", "end_pfn", "fin_pfn"].map(|f| {
                tracepoint_field_offset("page_isolation/test_pages_isolated", f).unwrap_or(0)
            }),
            cma_offsets: cma_offsets(),
            migrate_reasons: types
                .as_ref()
                .map(|b| btf_enum_constants(b, "MR_"))
                .unwrap_or_default(),
            kprobe_pmu: Path::new(KPROBE_PMU).exists(),
        })
    }

    pub fn has_symbol(&self, name: &str) -> bool {
        self.symbols.contains(name)
    }
}

/// What gup-trace needs from /proc/kallsyms.
struct Kallsyms {
    /// The hookable functions (of those gup-trace knows) this kernel has.
    functions: HashSet<String>,
    variables: layout::KernelVariables,
}

impl Kallsyms {
    /// Picks what gup-trace needs out of the kernel's symbol table. Addresses may all read 0
    /// (kptr_restrict): the functions are still listed, and the variables are then unknown.
    fn read() -> io::Result<Kallsyms> {
        let wanted: HashSet<&str> = Hook::ALL
            .iter()
            .filter(|h| h.tracepoint_category().is_none())
            .map(|h| h.name())
            .collect();
        let text = symbols::read_kallsyms()?;
        let mut found = Kallsyms {
            functions: HashSet::new(),
            variables: layout::KernelVariables::default(),
        };
        for symbol in text.lines().filter_map(KallsymsLine::parse) {
            if symbol.is_text() && wanted.contains(symbol.name) {
                found.functions.insert(symbol.name.to_string());
                continue;
            }
            let address = Some(symbol.address).filter(|a| *a != 0);
            match symbol.name {
                "vmemmap_base" => found.variables.vmemmap_base = address,
                // The zero page's pfn (`is_zero_pfn()`), renamed in later kernels.
                "zero_pfn" | "zero_page_pfn" => found.variables.zero_pfn = address,
                _ => {}
            }
        }
        Ok(found)
    }
}

/// A field's offset in a tracepoint's record, from its tracefs `format` file.
/// The cma tracepoints' field offsets (all 0 on kernels without CONFIG_CMA).
fn cma_offsets() -> CmaOffsets {
    let at = |event: &str, field: &str| tracepoint_field_offset(&format!("cma/{event}"), field);
    CmaOffsets {
        start_name: at("cma_alloc_start", "name").unwrap_or(0),
        retry_name: at("cma_alloc_busy_retry", "name").unwrap_or(0),
        retry_pfn: at("cma_alloc_busy_retry", "pfn").unwrap_or(0),
        retry_count: at("cma_alloc_busy_retry", "count").unwrap_or(0),
        finish_name: at("cma_alloc_finish", "name").unwrap_or(0),
        finish_pfn: at("cma_alloc_finish", "pfn").unwrap_or(0),
        finish_count: at("cma_alloc_finish", "count").unwrap_or(0),
        finish_errorno: at("cma_alloc_finish", "errorno").unwrap_or(0),
    }
}

/// Whether tracefs is readable and lacks `category/name`: the kernel was built without it
/// (the cma tracepoints need CONFIG_CMA), which is no failure to attach.
fn tracepoint_missing(category: &str, name: &str) -> bool {
    TRACEFS_ROOTS
        .iter()
        .find(|root| Path::new(&format!("{root}/events")).is_dir())
        .is_some_and(|root| !Path::new(&format!("{root}/events/{category}/{name}")).exists())
}

/// Where tracefs may be mounted: its own mount point, or under debugfs on older set-ups.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn tracepoint_field_offset(event: &str, field: &str) -> Option<u32> {
    let format = TRACEFS_ROOTS
        .iter()
        .find_map(|root| fs::read_to_string(format!("{root}/events/{event}/format")).ok())?;
    parse_field_offset(&format, field)
}

/// `field:bool success;\toffset:20;\tsize:1;\tsigned:0;` -> 20 for "success".
fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?.trim_start_matches('*');
        if name != field {
            return None;
        }
        rest.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|n| n.trim().parse().ok())
    })
}

/// The kernel's FOLL_* gup flags, by name.
///
/// Up to 6.4 they are #defines, absent from BTF; from 6.6 they are enums (mm_types.h and
/// mm/internal.h) whose values moved (FOLL_PIN 0x40000 -> 0x80000). BTF is the source when it
/// has them; the table holds the #define values of the kernels that predate the enums.
#[derive(Clone, Debug, Serialize)]
pub struct FollFlags {
    pub source: &'static str,
    pub flags: Vec<(String, u32)>,
}

/// include/linux/mm.h up to 6.4 (the flags gup-trace users meet; others print as hex).
const FOLL_DEFINES: &[(&str, u32)] = &[
    ("FOLL_WRITE", 0x01),
    ("FOLL_GET", 0x04),
    ("FOLL_FORCE", 0x10),
    ("FOLL_NOWAIT", 0x20),
    ("FOLL_NOFAULT", 0x80),
    ("FOLL_REMOTE", 0x2000),
    ("FOLL_ANON", 0x8000),
    ("FOLL_LONGTERM", 0x10000),
    ("FOLL_SPLIT_PMD", 0x20000),
    ("FOLL_PIN", 0x40000),
    ("FOLL_FAST_ONLY", 0x80000),
];

impl FollFlags {
    fn read(btf: Option<&btf_rs::Btf>) -> FollFlags {
        let from_btf = btf
            .map(|b| btf_enum_constants(b, "FOLL_"))
            .unwrap_or_default();
        if from_btf.iter().any(|(name, _)| name == "FOLL_PIN") {
            FollFlags {
                source: "BTF",
                flags: from_btf,
            }
        } else {
            FollFlags {
                source: "table (BTF has no FOLL_* enums: the kernel defines them as macros)",
                flags: FOLL_DEFINES
                    .iter()
                    .map(|(n, v)| (n.to_string(), *v))
                    .collect(),
            }
        }
    }

    pub fn value(&self, name: &str) -> Option<u32> {
        self.flags.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// FOLL_LONGTERM (0x10000 up to 6.4, 0x100 after); 0 if the table lacks it, and then no
    /// pin counts as long-term.
    pub fn longterm(&self) -> u32 {
        self.value("FOLL_LONGTERM").unwrap_or(0)
    }

    /// `WRITE|LONGTERM`; unknown bits in hex; `-` for none.
    pub fn describe(&self, mut bits: u32) -> String {
        if bits == 0 {
            return "-".into();
        }
        let mut parts = Vec::new();
        for (name, value) in &self.flags {
            if value.is_power_of_two() && bits & value != 0 {
                parts.push(name.trim_start_matches("FOLL_").to_string());
                bits &= !value;
            }
        }
        if bits != 0 {
            parts.push(format!("{bits:#x}"));
        }
        parts.join("|")
    }
}

/// Every enum constant whose name starts with `prefix`, searched through all enums (FOLL_* live
/// in anonymous enums, which cannot be looked up by name).
fn btf_enum_constants(btf: &btf_rs::Btf, prefix: &str) -> Vec<(String, u32)> {
    use fallible_iterator::FallibleIterator as _;
    let mut found = Vec::new();
    let mut types = btf.type_iter();
    while let Ok(Some(ty)) = types.next() {
        if let btf_rs::Type::Enum(e) = ty {
            for member in &e.members {
                if let Ok(name) = btf.resolve_name(member)
                    && name.starts_with(prefix)
                {
                    found.push((name, member.val()));
                }
            }
        }
    }
    found.sort_by_key(|(_, v)| *v);
    found
}

/// How a hook ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachKind {
    /// fentry with fexit.
    Fentry,
    /// kprobe with kretprobe.
    Kprobe,
    Tracepoint,
}

impl fmt::Display for AttachKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachKind::Fentry => "fentry",
            AttachKind::Kprobe => "kprobe",
            AttachKind::Tracepoint => "tracepoint",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HookStatus {
    Attached {
        kind: AttachKind,
    },
    /// The kernel has no such function: nothing is lost (its callers use another hooked one).
    NotInKernel,
    /// The function exists but could not be hooked; `reasons` says why for each method tried.
    Failed {
        reasons: Vec<String>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct HookReport {
    #[serde(serialize_with = "hook_name")]
    pub hook: Hook,
    #[serde(flatten)]
    pub status: HookStatus,
    /// What the user misses while this hook is not attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<&'static str>,
}

/// The capability report: one entry per hook, in table order.
#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    pub kernel: String,
    pub foll_pin: FlagValue,
    #[serde(skip)]
    pub foll: FollFlags,
    pub hooks: Vec<HookReport>,
    /// Why the owner of a pinned mm cannot be read (None: it is, pins are credited to the
    /// process whose memory they pin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners_unread: Option<String>,
}

impl Capabilities {
    pub fn attached(&self, class: HookClass) -> usize {
        self.hooks
            .iter()
            .filter(|r| r.hook.class() == class && matches!(r.status, HookStatus::Attached { .. }))
            .count()
    }

    /// How much of pinning the attached hooks let gup-trace see: what every command judges
    /// by.
    pub fn pin_visibility(&self) -> PinVisibility {
        if self.attached(HookClass::Pin) == 0 || self.attached(HookClass::Unpin) == 0 {
            PinVisibility::Blind
        } else if self.attached(HookClass::Grab) == 0 {
            PinVisibility::Calls
        } else {
            PinVisibility::Folios
        }
    }

    pub fn count_by_kind(&self, kind: AttachKind) -> usize {
        self.hooks
            .iter()
            .filter(|r| matches!(r.status, HookStatus::Attached { kind: k } if k == kind))
            .count()
    }
}

/// How much of pinning a kernel's attached hooks show, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PinVisibility {
    /// No pin call or no release is seen: nothing to judge pins by.
    Blind,
    /// Pin and release calls, but not the folios they pin (no grab hook, e.g. the folio layout
    /// could not be read): totals to compare with /proc/vmstat, no owner for any pin.
    Calls,
    /// Every folio grabbed and released too: who holds which pin.
    Folios,
}

fn hook_name<S: serde::Serializer>(hook: &Hook, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(hook.name())
}

fn cost_of_missing(hook: Hook) -> &'static str {
    match hook {
        Hook::MmapLockReleased => {
            "mmap_lock hold times and drops during GUP are not measured, releases not counted"
        }
        Hook::MmapLockStartLocking => "mmap_lock wait times during GUP are not measured",
        Hook::MmapLockAcquireReturned => {
            "mmap_lock waits, hold times and drop-and-retake events during GUP are not measured"
        }
        _ => match hook.class() {
            HookClass::Pin => "pin calls through this entry point are not seen",
            HookClass::Get => "FOLL_GET calls through this entry point are not seen",
            HookClass::Unpin => {
                "releases through this function are not seen: their pins look leaked"
            }
            HookClass::Grab => {
                "per-folio pins taken here are not seen (no refcount/pincount check for them)"
            }
            HookClass::SlowPath => "calls cannot be split into fast-path and slow-path pages",
            HookClass::MmapLock => "mmap_lock activity is not seen",
            HookClass::Process => {
                "process exits and forks are not seen: no orphaned-pin findings, no pid-reuse detection"
            }
            HookClass::Migration => {
                "failed migration, isolation or memory offlining is not seen: no blocked-migration findings"
            }
        },
    }
}

/// Attaches every hook this kernel supports to `ebpf`, fentry first, kprobe as the fallback,
/// and reports what happened to each. The links returned keep the programs attached.
pub fn attach_all(ebpf: &mut Ebpf, facts: &KernelFacts) -> (Capabilities, Links) {
    let mut links = Links::default();
    let hooks = Hook::ALL
        .iter()
        // Each program is verified as it attaches: seconds each under emulation. A stop asked
        // for meanwhile ends the loop; the session then gives up (see `Session::start`).
        .take_while(|_| !crate::stop::pending())
        .map(|&hook| {
            let status = match (hook.tracepoint_category(), &facts.folio_layout) {
                (Some(category), _) if tracepoint_missing(category, hook.name()) => {
                    HookStatus::NotInKernel
                }
                (Some(_), _) => attach_tracepoint(ebpf, hook, &mut links),
                _ if !facts.has_symbol(hook.name()) => HookStatus::NotInKernel,
                (_, Err(e)) if hook.class() == HookClass::Grab => HookStatus::Failed {
                    reasons: vec![format!("cannot read folio counts: {e}")],
                },
                _ => attach_function(ebpf, facts, hook, &mut links),
            };
            let cost = matches!(status, HookStatus::Failed { .. }).then(|| cost_of_missing(hook));
            HookReport { hook, status, cost }
        })
        .collect();
    let capabilities = Capabilities {
        kernel: facts.release.clone(),
        foll_pin: facts.foll_pin,
        foll: facts.foll.clone(),
        hooks,
        owners_unread: facts.mm_owner.as_ref().err().map(|e| e.to_string()),
    };
    (capabilities, links)
}

/// Attaches again every hook `capabilities` reports attached, the same way, to programs that
/// are still loaded. Loading (verifying) is the slow part of starting a session, attaching
/// is not: this is how a session detaches and comes back without paying for it again.
pub fn relink(ebpf: &mut Ebpf, capabilities: &Capabilities) -> Result<Links> {
    let mut links = Links::default();
    for report in &capabilities.hooks {
        if let HookStatus::Attached { kind } = report.status {
            let hook_links = link(ebpf, report.hook, kind)
                .with_context(|| format!("re-attaching {}", report.hook.name()))?;
            links.append(hook_links);
        }
    }
    Ok(links)
}

/// The links that keep programs attached. Dropping them detaches the programs, which stay
/// loaded (see [`relink`]).
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }

    fn append(&mut self, mut other: Links) {
        self.0.append(&mut other.0);
    }
}

impl Drop for Links {
    /// Newest first: each hook's entry program goes before its exit program (see [`link`]).
    fn drop(&mut self) {
        while self.0.pop().is_some() {}
    }
}

fn attach_function(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    hook: Hook,
    links: &mut Links,
) -> HookStatus {
    let mut reasons = Vec::new();
    match &facts.btf {
        Some(btf) => {
            match load_fentry(ebpf, btf, hook).and_then(|()| link(ebpf, hook, AttachKind::Fentry)) {
                Ok(hook_links) => {
                    links.append(hook_links);
                    return HookStatus::Attached {
                        kind: AttachKind::Fentry,
                    };
                }
                Err(e) => {
                    unload_fentry(ebpf, hook);
                    log::info!("{}: {e}; trying kprobe", hook.name());
                    reasons.push(e.to_string())
                }
            }
        }
        None => reasons.push(format!(
            "fentry impossible: {}",
            facts.btf_error.as_deref().unwrap_or("no BTF")
        )),
    }
    if !facts.kprobe_pmu {
        reasons.push(format!(
            "kprobe impossible: kernel built without CONFIG_KPROBES (no {KPROBE_PMU})"
        ));
        return HookStatus::Failed { reasons };
    }
    match load_kprobes(ebpf, hook).and_then(|()| link(ebpf, hook, AttachKind::Kprobe)) {
        Ok(hook_links) => {
            links.append(hook_links);
            HookStatus::Attached {
                kind: AttachKind::Kprobe,
            }
        }
        Err(e) => {
            reasons.push(e.to_string());
            HookStatus::Failed { reasons }
        }
    }
}

fn attach_tracepoint(ebpf: &mut Ebpf, hook: Hook, links: &mut Links) -> HookStatus {
    let started = Instant::now();
    let result = program::<TracePoint>(ebpf, hook.name())
        .and_then(|prog| prog.load().map_err(refused("tracepoint")))
        .inspect(|()| log_load(ebpf, hook.name(), started))
        .and_then(|()| link(ebpf, hook, AttachKind::Tracepoint));
    match result {
        Ok(hook_links) => {
            links.append(hook_links);
            HookStatus::Attached {
                kind: AttachKind::Tracepoint,
            }
        }
        Err(reason) => HookStatus::Failed {
            reasons: vec![reason.to_string()],
        },
    }
}

fn load_fentry(ebpf: &mut Ebpf, btf: &Btf, hook: Hook) -> Result<(), AttachError> {
    let symbol = hook.name();
    let name = format!("fexit_{symbol}");
    let started = Instant::now();
    let prog: &mut FExit = program(ebpf, &name)?;
    prog.load(symbol, btf).map_err(refused("fexit"))?;
    log_load(ebpf, &name, started);
    let name = format!("fentry_{symbol}");
    let started = Instant::now();
    let prog: &mut FEntry = program(ebpf, &name)?;
    prog.load(symbol, btf).map_err(refused("fentry"))?;
    log_load(ebpf, &name, started);
    Ok(())
}

/// One line per program loaded: how long the kernel took to verify it and how many
/// instructions its verifier walked. `RUST_LOG=gup_trace::kernel=info` (or `--verbose`) shows
/// them; in an instruction-time guest the milliseconds are millions of instructions.
fn log_load(ebpf: &Ebpf, name: &str, started: Instant) {
    let elapsed = started.elapsed();
    let verified = ebpf
        .program(name)
        .and_then(|prog| prog.info().ok())
        .and_then(|info| info.verified_instruction_count())
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    log::info!(
        "loaded {name} in {:.1} ms, {verified} instructions verified",
        elapsed.as_secs_f64() * 1e3
    );
}

/// After a failed fentry attempt: the kprobe pair replaces it, and a lone exit program must
/// not stay behind.
fn unload_fentry(ebpf: &mut Ebpf, hook: Hook) {
    let symbol = hook.name();
    if let Ok(prog) = program::<FExit>(ebpf, &format!("fexit_{symbol}")) {
        let _ = prog.unload();
    }
    if let Ok(prog) = program::<FEntry>(ebpf, &format!("fentry_{symbol}")) {
        let _ = prog.unload();
    }
}

/// A function's kprobe pair, exit program first, each with the word its errors use.
fn kprobe_pair(symbol: &str) -> [(&'static str, String); 2] {
    [
        ("kretprobe", format!("kretprobe_{symbol}")),
        ("kprobe", format!("kprobe_{symbol}")),
    ]
}

fn load_kprobes(ebpf: &mut Ebpf, hook: Hook) -> Result<(), AttachError> {
    for (kind, name) in kprobe_pair(hook.name()) {
        let started = Instant::now();
        let prog: &mut KProbe = program(ebpf, &name)?;
        prog.load().map_err(refused(kind))?;
        log_load(ebpf, &name, started);
    }
    Ok(())
}

/// Attaches `hook`'s loaded programs of `kind`. The exit program is attached before the entry
/// one: a call already in flight then shows up as an unmatched exit (counted and ignored)
/// instead of leaving a thread that looks nested forever.
fn link(ebpf: &mut Ebpf, hook: Hook, kind: AttachKind) -> Result<Links, AttachError> {
    let symbol = hook.name();
    let mut links = Links::default();
    match kind {
        AttachKind::Fentry => {
            let prog: &mut FExit = program(ebpf, &format!("fexit_{symbol}"))?;
            let link = prog.attach().and_then(|id| prog.take_link(id));
            links.push(link.map_err(refused("fexit"))?);
            let prog: &mut FEntry = program(ebpf, &format!("fentry_{symbol}"))?;
            let link = prog.attach().and_then(|id| prog.take_link(id));
            links.push(link.map_err(refused("fentry"))?);
        }
        AttachKind::Kprobe => {
            for (kind, name) in kprobe_pair(symbol) {
                let prog: &mut KProbe = program(ebpf, &name)?;
                let link = prog.attach(symbol, 0).and_then(|id| prog.take_link(id));
                links.push(link.map_err(refused(kind))?);
            }
        }
        AttachKind::Tracepoint => {
            let category = hook
                .tracepoint_category()
                .ok_or(AttachError::NotATracepoint(symbol))?;
            let prog: &mut TracePoint = program(ebpf, symbol)?;
            let link = prog
                .attach(category, symbol)
                .and_then(|id| prog.take_link(id));
            links.push(link.map_err(refused("tracepoint"))?);
        }
    }
    Ok(links)
}

/// Why a hook's programs could not be loaded or attached. The capability report keeps its text
/// as the reason the hook is missing.
#[derive(Debug, thiserror::Error)]
enum AttachError {
    #[error("program {0} missing from the eBPF object (build mismatch)")]
    MissingProgram(String),
    #[error("{name}: {error}")]
    WrongProgramType { name: String, error: ProgramError },
    #[error("{0} is no tracepoint")]
    NotATracepoint(&'static str),
    /// The kernel refused a program of `kind` (`fentry`, `kretprobe`, ...).
    #[error("{}", refusal(kind, error))]
    Refused {
        kind: &'static str,
        error: ProgramError,
    },
}

/// The error for a program of `kind` the kernel refused to load or attach.
fn refused(kind: &'static str) -> impl FnOnce(ProgramError) -> AttachError {
    move |error| AttachError::Refused { kind, error }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| AttachError::MissingProgram(name.to_string()))?;
    prog.try_into()
        .map_err(|error| AttachError::WrongProgramType {
            name: name.to_string(),
            error,
        })
}

/// One line that says what the kernel refused and why.
fn refusal(kind: &str, err: &ProgramError) -> String {
    let io = find_io_error(err);
    match io.and_then(io::Error::raw_os_error) {
        Some(libc::EPERM) => format!("{kind} refused: EPERM (this kernel forbids {kind} programs)"),
        Some(524) => format!(
            "{kind} refused: error 524 (ENOTSUPP: the kernel cannot build a BPF trampoline for this function, e.g. fexit on a 7-argument function before 6.x)"
        ),
        Some(libc::ENOENT) => format!(
            "{kind} failed: ENOENT (symbol not attachable: inlined, notrace or blacklisted)"
        ),
        Some(libc::EINVAL) => format!("{kind} failed: EINVAL ({err})"),
        // Not the kernel's refusal: this process ran out of descriptors (see `limits`).
        Some(libc::EMFILE) => format!(
            "{kind} failed: EMFILE (out of open files: raise RLIMIT_NOFILE, e.g. `ulimit -n 4096`)"
        ),
        _ => format!("{kind} failed: {err}"),
    }
}

fn find_io_error(err: &ProgramError) -> Option<&io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_tracepoint_field_offset_in_both_record_layouts() {
        // 6.1: memcg_path before write and success.
        let old = "name: mmap_lock_acquire_returned\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:struct mm_struct * mm;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:__data_loc char[] memcg_path;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:bool write;\toffset:20;\tsize:1;\tsigned:0;\n\tfield:bool success;\toffset:21;\tsize:1;\tsigned:0;\n";
        // 6.13+: memcg_path gone, cgroup id instead.
        let new = "format:\n\tfield:struct mm_struct * mm;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:u64 memcg_id;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:bool write;\toffset:24;\tsize:1;\tsigned:0;\n\tfield:bool success;\toffset:25;\tsize:1;\tsigned:0;\n";
        assert_eq!(parse_field_offset(old, "success"), Some(21));
        assert_eq!(parse_field_offset(new, "success"), Some(25));
        assert_eq!(parse_field_offset(new, "mm"), Some(8));
        assert_eq!(parse_field_offset(new, "missing"), None);
    }
}
