//! Every eBPF program passes this machine's verifier. The host kernel refuses fentry and
//! cannot attach kprobes, but it still verifies kprobe-type programs, and each function's
//! kprobe flavour runs the same code as its fentry one: the bounded walks, the ring-buffer
//! output of a whole release batch. A change that the verifier rejects, or that takes it
//! seconds (minutes under the VMs' emulation), fails here, without booting anything.
//!
//! The programs are loaded with each kind of folio layout userspace sends. The layout is a
//! read-only global, so the verifier knows its values and skips the code they rule out: with
//! the unread fallback (`valid` 0) that is every folio read and the release walks.

use std::time::Duration;

use aya::{EbpfLoader, programs::KProbe};
use gup_trace::kernel;
use gup_trace_common::{FolioLayout, Hook, global, grab_rule};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gup-trace"));

/// A layout as read from BTF: x86-64 6.18's, the kernel the folio code is heaviest on.
fn read_layout() -> FolioLayout {
    let grab_rules = [
        (Hook::TryGrabFolio, grab_rule::STATUS),
        (Hook::TryGrabFolioFast, grab_rule::POINTER),
        (Hook::TryGrabPage, grab_rule::VOID),
        (Hook::FolioAddPin, grab_rule::VOID),
        (Hook::FolioAddPins, grab_rule::STATUS),
    ]
    .into_iter()
    .fold(0, |rules, (hook, rule)| grab_rule::with(rules, hook, rule));
    FolioLayout {
        vmemmap_start: 0xffff_ea00_0000_0000,
        page_struct_size: 64,
        flags_offset: 0,
        compound_head_offset: 8,
        refcount_offset: 52,
        pincount_offset: 92,
        order_offset: 64,
        head_bit: 6,
        grab_rules,
        valid: 1,
        ..kernel::unread_layout()
    }
}

/// The CPU time this thread has used, the verifier's included (it runs inside the `bpf()`
/// call). Wall time would also count other jobs sharing the machine's cores: under a parallel
/// build a 0.5 s verification took 2.3 s.
fn verifier_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[test]
fn every_kprobe_program_passes_the_verifier_quickly() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "loading eBPF programs needs root: run the host tests as root"
    );
    for (which, layout) in [("read", read_layout()), ("unread", kernel::unread_layout())] {
        let mut ebpf = EbpfLoader::new()
            .override_global(global::FOLIO_LAYOUT, &layout, true)
            .load(EBPF_OBJECT)
            .expect("the eBPF object loads (maps are created)");
        let names: Vec<String> = ebpf
            .programs()
            .map(|(name, _)| name.to_string())
            .filter(|name| name.starts_with("kprobe_") || name.starts_with("kretprobe_"))
            .collect();
        assert!(
            names.len() >= 50,
            "expected every hook's kprobe pair, got {names:?}"
        );
        let mut slow = Vec::new();
        for name in &names {
            let prog: &mut KProbe = ebpf
                .program_mut(name)
                .expect("listed")
                .try_into()
                .expect("a kprobe program");
            let start = verifier_time();
            if let Err(e) = prog.load() {
                let text = format!("{e:#}");
                let tail = &text[text.len().saturating_sub(1200)..];
                panic!("{name} fails the verifier with the {which} layout: ...{tail}");
            }
            // ~0.2 s here became minutes under TCG with 6.1's verifier: keep a wide margin.
            let spent = verifier_time() - start;
            if spent > Duration::from_secs(2) {
                slow.push(format!("{name}: {spent:?}"));
            }
        }
        assert!(
            slow.is_empty(),
            "programs slow to verify with the {which} layout: {slow:?}"
        );
    }
}
