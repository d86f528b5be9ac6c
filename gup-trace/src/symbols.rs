//! Kernel symbolization: /proc/kallsyms read into one sorted table, and kernel addresses (the
//! frames of a stack the kernel's unwinder recorded) named as `function+0xoffset`, with
//! ` [module]` after symbols that belong to a module; a [`CallStack`] is such a stack, or why
//! there is none. The one reader and line parser of kallsyms: `kernel` looks up hookable
//! functions with them too. Depends on nothing else in the crate.
//!
//! aya's `util::kernel_symbols()` is not enough here: it keeps address -> name only, so it loses
//! the module column and the symbol type (a stack address must resolve to a function, never to
//! a data symbol that happens to precede it), and it folds the all-zero addresses a
//! kptr_restrict kernel shows into one entry instead of saying why nothing resolves.

use std::{collections::HashMap, fmt, fs, io, sync::Arc};

use gup_trace_common::Hook;

pub const KALLSYMS: &str = "/proc/kallsyms";
const PROC_MODULES: &str = "/proc/modules";

/// How far past a function's first byte an address may lie and still be named after it.
/// kallsyms gives no sizes: an address in memory it does not describe (a freed init section,
/// an unlisted JIT image) would otherwise be named after whatever symbol precedes it, however
/// far away. Real kernel functions are far smaller than this.
const MAX_FUNCTION_SPAN: u64 = 1 << 20;

/// Why the kernel's symbol table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(
        "cannot read {path}: {0} (the kernel needs CONFIG_KALLSYMS to name stack frames)",
        path = KALLSYMS
    )]
    Read(io::Error),
    /// Every address reads 0: kptr_restrict hides them from this reader.
    #[error(
        "kallsyms addresses are hidden (kptr_restrict): run as root (with \
         kernel.kptr_restrict=2 even root sees zeros: `sysctl kernel.kptr_restrict=1`)"
    )]
    Hidden,
    #[error("{path} line {line} is not `ADDRESS TYPE NAME [MODULE]`: {text:?}", path = KALLSYMS)]
    Malformed { line: usize, text: String },
    #[error(
        "{path} lists no function symbols, so no stack frame can be named: \
         check that the file is the kernel's (is /proc mounted?)",
        path = KALLSYMS
    )]
    NoFunctions,
}

/// Reads /proc/kallsyms whole: the one reader of the kernel's symbol table, for the stack
/// names here and for the hookable functions and variables `kernel` looks for.
pub fn read_kallsyms() -> io::Result<String> {
    fs::read_to_string(KALLSYMS)
}

/// One line of /proc/kallsyms: `ADDRESS TYPE NAME`, with `\t[MODULE]` after module symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KallsymsLine<'a> {
    /// 0 for every symbol when kptr_restrict hides addresses from this reader.
    pub address: u64,
    /// The symbol type letter: `t`/`T` text, `W` weak, `d`/`D` data, ...
    pub kind: &'a str,
    pub name: &'a str,
    pub module: Option<&'a str>,
}

impl<'a> KallsymsLine<'a> {
    /// The line's fields, or None when it is not `ADDRESS TYPE NAME [[MODULE]]`.
    pub fn parse(line: &'a str) -> Option<KallsymsLine<'a>> {
        let mut fields = line.split_ascii_whitespace();
        let (address, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
        let module = match fields.next() {
            None => None,
            Some(m) => Some(
                m.strip_prefix('[')
                    .and_then(|m| m.strip_suffix(']'))
                    .filter(|m| !m.is_empty())?,
            ),
        };
        if fields.next().is_some() || kind.len() != 1 {
            return None;
        }
        Some(KallsymsLine {
            address: u64::from_str_radix(address, 16).ok()?,
            kind,
            name,
            module,
        })
    }

    /// Text symbols (local or global): what can be hooked, and what a stack frame is in.
    pub fn is_text(&self) -> bool {
        matches!(self.kind, "t" | "T")
    }
}

/// The kernel's symbols, sorted by address.
pub struct KernelSymbols {
    entries: Vec<Entry>,
    modules: Vec<Box<str>>,
    /// Name and address of each loaded module when the table was read (see `modules_changed`).
    module_list: Vec<String>,
}

/// One kallsyms line. Only functions keep a name; other symbols (data) are kept to end the
/// function before them, so that an address past a function's code does not resolve to it.
struct Entry {
    addr: u64,
    name: Box<str>,
    module: Option<u32>,
    function: bool,
}

/// One frame of a kernel stack, top of the stack first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    pub address: u64,
    /// None when no function in the symbol table covers the address.
    pub symbol: Option<FrameSymbol>,
}

/// A GUP call's kernel stack as `--stacks` shows it and recordings keep it: the frames, or why
/// there are none.
pub type CallStack = Result<Arc<[StackFrame]>, String>;

/// The module kallsyms gives BPF programs and trampolines.
const BPF_MODULE: &str = "bpf";

/// The frames worth showing: the GUP call's path, without the tracer's own frames on top
/// (gup-trace's eBPF program and the fentry trampoline that runs it). An fentry trampoline
/// also hides the hooked function's own frame, so such a stack starts at its caller; where the
/// hooked function's frame is present (a kprobe hook), the stack starts at it.
pub fn call_frames(frames: &[StackFrame], hook: Hook) -> &[StackFrame] {
    if let Some(top) = frames
        .iter()
        .position(|f| f.function() == Some(hook.name()))
    {
        return &frames[top..];
    }
    let tracer = frames
        .iter()
        .take_while(|f| {
            f.symbol
                .as_ref()
                .is_some_and(|s| s.module.as_deref() == Some(BPF_MODULE))
        })
        .count();
    &frames[tracer..]
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSymbol {
    pub function: String,
    /// Bytes from the function's first instruction to `address`.
    pub offset: u64,
    /// The module the function belongs to (`bpf` for BPF programs and trampolines); None for
    /// the kernel image itself.
    pub module: Option<String>,
}

impl StackFrame {
    pub fn function(&self) -> Option<&str> {
        self.symbol.as_ref().map(|s| s.function.as_str())
    }
}

impl fmt::Display for StackFrame {
    /// `pin_user_pages_fast+0x1f`, `gup_test_ioctl+0x8c [gup_test]`, or the bare address when
    /// no function covers it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.symbol {
            None => write!(f, "{:#x}", self.address),
            Some(s) => {
                write!(f, "{}+{:#x}", s.function, s.offset)?;
                if let Some(module) = &s.module {
                    write!(f, " [{module}]")?;
                }
                Ok(())
            }
        }
    }
}

impl KernelSymbols {
    /// Reads /proc/kallsyms (and the module list, to notice modules loaded later).
    pub fn load() -> Result<KernelSymbols, SymbolsError> {
        let text = read_kallsyms().map_err(SymbolsError::Read)?;
        let mut symbols = KernelSymbols::parse(&text)?;
        symbols.module_list = read_module_list();
        Ok(symbols)
    }

    /// Parses kallsyms text: `ADDRESS TYPE NAME` lines, with `\t[MODULE]` after module
    /// symbols. Lines need not be sorted (modules are listed after the kernel image, each
    /// wherever the kernel put it).
    pub fn parse(text: &str) -> Result<KernelSymbols, SymbolsError> {
        let mut entries = Vec::new();
        let mut modules: Vec<Box<str>> = Vec::new();
        let mut module_ids: HashMap<&str, u32> = HashMap::new();
        let mut any_address = false;
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some(parsed) = KallsymsLine::parse(line) else {
                return Err(SymbolsError::Malformed {
                    line: index + 1,
                    text: line.to_string(),
                });
            };
            let addr = parsed.address;
            let module = parsed.module.map(|m| {
                *module_ids.entry(m).or_insert_with(|| {
                    modules.push(m.into());
                    (modules.len() - 1) as u32
                })
            });
            any_address |= addr != 0;
            // W: a weak definition, which in kallsyms is a function too.
            let function = parsed.is_text() || parsed.kind == "W";
            entries.push(Entry {
                addr,
                name: if function {
                    parsed.name.into()
                } else {
                    Box::default()
                },
                module,
                function,
            });
        }
        if !entries.is_empty() && !any_address {
            return Err(SymbolsError::Hidden);
        }
        // Several names can share an address (_stext, _text, ...). Keep one, as the kernel's
        // own lookup does: a function over a data symbol, then the first listed.
        entries.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.function.cmp(&a.function)));
        entries.dedup_by_key(|e| e.addr);
        if !entries.iter().any(|e| e.function) {
            return Err(SymbolsError::NoFunctions);
        }
        Ok(KernelSymbols {
            entries,
            modules,
            module_list: Vec::new(),
        })
    }

    /// How many distinct addresses the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The function containing `address`, or None when none does (before the first symbol,
    /// in a data symbol, or too far past the last function to belong to it).
    pub fn resolve(&self, address: u64) -> Option<FrameSymbol> {
        let after = self.entries.partition_point(|e| e.addr <= address);
        let entry = &self.entries[after.checked_sub(1)?];
        let offset = address - entry.addr;
        if !entry.function || offset >= MAX_FUNCTION_SPAN {
            return None;
        }
        Some(FrameSymbol {
            function: entry.name.to_string(),
            offset,
            module: entry.module.map(|m| self.modules[m as usize].to_string()),
        })
    }

    /// Names a stack as the kernel's unwinder recorded it, top first. Every frame below the
    /// top is a return address: the instruction after a call, which is the next function's
    /// first byte when the call ends its function (a call to a noreturn function), so those
    /// are looked up one byte back, as the kernel's own backtraces do; the offset shown is
    /// still that of the return address.
    pub fn stack(&self, addresses: &[u64]) -> Vec<StackFrame> {
        addresses
            .iter()
            .enumerate()
            .map(|(depth, &address)| {
                let lookup = if depth == 0 {
                    address
                } else {
                    address.saturating_sub(1)
                };
                StackFrame {
                    address,
                    symbol: self.resolve(lookup).map(|mut s| {
                        s.offset += address - lookup;
                        s
                    }),
                }
            })
            .collect()
    }

    /// Whether a module was loaded or unloaded since the table was read, so that addresses in
    /// it would resolve wrongly or not at all: the table should then be read again.
    pub fn modules_changed(&self) -> bool {
        read_module_list() != self.module_list
    }
}

/// `NAME ADDRESS` of each module in /proc/modules (its other columns, use counts and state,
/// change without any symbol changing). Empty when the kernel has no module support.
fn read_module_list() -> Vec<String> {
    let text = fs::read_to_string(PROC_MODULES).unwrap_or_default();
    module_list(&text)
}

fn module_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            Some(format!("{} {}", fields.first()?, fields.get(5)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Module lines, unsorted, as kallsyms lists them: the kernel image, then each module.
    const KALLSYMS_TEXT: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81234000 T pin_user_pages_fast
ffffffff81234400 t internal_get_user_pages_fast
ffffffff81235000 T io_sqe_buffer_register
ffffffff81236000 D some_data
ffffffff81237000 W arch_weak_hook
ffffffffc0a02000 t gup_test_ioctl\t[gup_test]
ffffffffc0a01000 t gup_test_init\t[gup_test]
ffffffffc0a03000 t bpf_prog_6deef7357e7b4530_gup_enter\t[bpf]
ffffffff81238000 T _etext
";

    fn symbols() -> KernelSymbols {
        KernelSymbols::parse(KALLSYMS_TEXT).unwrap()
    }

    /// The top frame's name, or None when it stays a bare address.
    fn name(s: &KernelSymbols, addr: u64) -> Option<String> {
        let frame = s.stack(&[addr]).remove(0);
        frame.symbol.is_some().then(|| frame.to_string())
    }

    #[test]
    fn resolves_kernel_and_module_functions() {
        let s = symbols();
        assert_eq!(
            name(&s, 0xffffffff8123401f).as_deref(),
            Some("pin_user_pages_fast+0x1f")
        );
        assert_eq!(
            name(&s, 0xffffffff81234400).as_deref(),
            Some("internal_get_user_pages_fast+0x0")
        );
        assert_eq!(
            name(&s, 0xffffffffc0a0208c).as_deref(),
            Some("gup_test_ioctl+0x8c [gup_test]")
        );
        assert_eq!(
            name(&s, 0xffffffffc0a01010).as_deref(),
            Some("gup_test_init+0x10 [gup_test]"),
            "module lines out of address order still resolve"
        );
        assert_eq!(
            name(&s, 0xffffffff81237004).as_deref(),
            Some("arch_weak_hook+0x4")
        );
    }

    #[test]
    fn addresses_outside_functions_stay_unnamed() {
        let s = symbols();
        assert_eq!(
            s.resolve(0xffffffff80ffffff),
            None,
            "before the first symbol"
        );
        assert_eq!(s.resolve(0), None);
        assert_eq!(s.resolve(0xffffffff81236010), None, "inside a data symbol");
        assert_eq!(
            s.resolve(0xffffffffc0a03000 + MAX_FUNCTION_SPAN),
            None,
            "far past the last function"
        );
        let frame = &s.stack(&[0xffffffff80ffffff])[0];
        assert_eq!(frame.to_string(), "0xffffffff80ffffff");
    }

    #[test]
    fn aliases_keep_the_first_listed_name() {
        assert_eq!(
            symbols().resolve(0xffffffff81000010).unwrap().function,
            "_stext"
        );
    }

    #[test]
    fn return_addresses_resolve_to_the_calling_function() {
        let s = symbols();
        // A call that ends pin_user_pages_fast returns to the next function's first byte: the
        // frame is still pin_user_pages_fast's. The top frame is an exact address.
        let frames = s.stack(&[0xffffffff81234400, 0xffffffff81234400]);
        assert_eq!(frames[0].to_string(), "internal_get_user_pages_fast+0x0");
        assert_eq!(frames[1].to_string(), "pin_user_pages_fast+0x400");
        assert_eq!(frames[1].function(), Some("pin_user_pages_fast"));
        assert_eq!(
            frames[1].symbol.as_ref().unwrap().module,
            None,
            "kernel image symbols have no module"
        );
    }

    #[test]
    fn zeroed_addresses_mean_kptr_restrict() {
        let hidden = "\
0000000000000000 T _stext
0000000000000000 T pin_user_pages_fast
0000000000000000 t gup_test_ioctl\t[gup_test]
";
        let err = KernelSymbols::parse(hidden).err().unwrap();
        assert!(matches!(err, SymbolsError::Hidden));
        assert!(
            err.to_string()
                .starts_with("kallsyms addresses are hidden (kptr_restrict): run as root"),
            "{err}"
        );
    }

    #[test]
    fn malformed_and_empty_tables_are_errors() {
        let err = KernelSymbols::parse("ffffffff81000000 T _stext\nzzzz T oops\n")
            .err()
            .unwrap();
        assert!(
            matches!(err, SymbolsError::Malformed { line: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            KernelSymbols::parse("ffffffff81000000 T\n").err().unwrap(),
            SymbolsError::Malformed { line: 1, .. }
        ));
        assert!(matches!(
            KernelSymbols::parse("ffffffffc0000000 t f\t[]\n")
                .err()
                .unwrap(),
            SymbolsError::Malformed { .. }
        ));
        assert!(matches!(
            KernelSymbols::parse("").err().unwrap(),
            SymbolsError::NoFunctions
        ));
        assert!(matches!(
            KernelSymbols::parse("ffffffff81000000 D only_data\n")
                .err()
                .unwrap(),
            SymbolsError::NoFunctions
        ));
    }

    #[test]
    fn module_list_keeps_names_and_addresses_only() {
        let before = module_list(
            "gup_test 16384 0 - Live 0xffffffffc0a00000\nnvme 57344 2 - Live 0xffffffffc0300000\n",
        );
        let busier = module_list(
            "gup_test 16384 3 - Live 0xffffffffc0a00000\nnvme 57344 2 - Live 0xffffffffc0300000\n",
        );
        assert_eq!(before, busier, "a use count change is no symbol change");
        assert_eq!(before[0], "gup_test 0xffffffffc0a00000");
        assert_ne!(
            before,
            module_list("nvme 57344 2 - Live 0xffffffffc0300000\n")
        );
    }
}
