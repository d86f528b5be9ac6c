use which::which;

fn main() {
    // Rebuild when bpf-linker changes: it does the final link of the eBPF object, and cargo
    // does not track it on its own.
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found in PATH: run `cargo xtask setup` (it builds bpf-linker against LLVM 22)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
    // bpf-linker passes LLVM `--bpf-expand-memcpy-in-order` by default, which stops LLVM from
    // expanding memset inline: every zeroed struct, Option or array on the stack then became a
    // call to a `memset` subprogram that stores one byte per loop iteration (~500 call sites,
    // each loop run by the verifier and at every event). Without it LLVM writes the zeroes with
    // plain stores, as clang does for C programs. A copy of unknown length (aya-log copying a
    // hook's name) still calls `memcpy`.
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
