//! Every eBPF program passes this machine's verifier. The host kernel refuses fentry and
//! cannot attach kprobes, but it still verifies kprobe-type programs, and each function's
//! kprobe flavour runs the same code as its fentry one: the bounded walks, the ring-buffer
//! output of a whole release batch. A change that the verifier rejects, or that takes it
//! seconds (minutes under the VMs' emulation), fails here, without booting anything.

use std::time::{Duration, Instant};

use aya::{EbpfLoader, programs::KProbe};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gup-trace"));

#[test]
fn every_kprobe_program_passes_the_verifier_quickly() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "loading eBPF programs needs root: run the host tests as root"
    );
    let mut ebpf = EbpfLoader::new()
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
        let start = Instant::now();
        if let Err(e) = prog.load() {
            let text = format!("{e:#}");
            let tail = &text[text.len().saturating_sub(1200)..];
            panic!("{name} fails the verifier: ...{tail}");
        }
        // ~0.2 s here became minutes under TCG with 6.1's verifier: keep a wide margin.
        if start.elapsed() > Duration::from_secs(2) {
            slow.push(format!("{name}: {:?}", start.elapsed()));
        }
    }
    assert!(slow.is_empty(), "programs slow to verify: {slow:?}");
}
