use which::which;

/// Rebuild when bpf-linker changes: it does the final link of the eBPF object, and cargo does not
/// track it on its own.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found in PATH: run `cargo xtask setup` (it builds bpf-linker against LLVM 22)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
