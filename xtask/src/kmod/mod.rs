//! The pinleak test module (xtask/fixtures/pinleak): built out of tree against a stock Debian
//! kernel's headers package, for the VM tests that need real pin leaks.
//!
//! The headers come through the private apt of [`kernels`]: `linux-headers-<release>` and the
//! packages of its dependencies that kbuild reads (`linux-headers-*-common`, `linux-kbuild-*`),
//! downloaded and unpacked with `dpkg-deb -x` under `<workspace>/target/vm/headers/<release>/`
//! (once; the machine's dpkg never sees them). The module is built in
//! `<workspace>/target/vm/kmod/<release>/` with the compiler the kernel was built with: on this
//! machine when it has that compiler and can run the kbuild programs (Debian 12's kernels on
//! Debian 12), otherwise in the Debian 13 build root of [`buildroot`] (Debian 13's kernels are
//! built with gcc-14 and their kbuild programs need glibc >= 2.38). A kernel neither can build
//! for gets an error that says why, not a module of doubtful ABI.

mod buildroot;

pub use buildroot::BuildRoot;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{capture, describe, output, run as run_cmd};
use crate::debroot::last_lines;
use crate::files::{create_dir, write};
use crate::kernels::{self, Kernel};
use crate::paths::vm_dir;
use crate::series::KernelSeriesList;

/// `cargo xtask kmod`'s flags.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub kernels: KernelSeriesList,
}

/// The fixture's sources: the module, its Kbuild, the ioctl header and the user program.
const MODULE_SOURCES: [&str; 3] = ["Kbuild", "pinleak.c", "pinleak.h"];
const USER_SOURCES: [&str; 2] = ["pinleak-user.c", "pinleak.h"];

/// Where `vm-run --kmod` puts the files in the guest (the guest script starts in /root).
pub const GUEST_MODULE: &str = "/root/pinleak.ko";
pub const GUEST_USER: &str = "/bin/pinleak-user";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pinleak")
}

/// `cargo xtask kmod`: builds the module for each kernel series, then prints one line per
/// kernel (the .ko, or why it cannot be built here). Fails if any kernel whose headers exist
/// failed.
pub fn run(opts: &Options) -> Result<()> {
    let series = opts.kernels.series();
    let user = user_program()?;
    let mut rows = Vec::new();
    for s in &series {
        let result = kernels::resolve_one(s).and_then(|kernel| {
            let ko = module_for(&kernel)?;
            Ok((kernel.release, ko))
        });
        rows.push((s.to_string(), result));
    }
    println!("\npinleak-user: {}", user.display());
    for (s, result) in &rows {
        match result {
            Ok((release, ko)) => println!("{s}: {release}: {}", ko.display()),
            Err(e) if NoHeaders::is_cause_of(e) => println!("{s}: no module: {e:#}"),
            Err(e) => println!("{s}: cannot build: {e:#}"),
        }
    }
    // A kernel whose headers are not to be had is no failure: nothing here could build for it.
    let failed = rows
        .iter()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| !NoHeaders::is_cause_of(e)))
        .count();
    if failed > 0 {
        bail!(
            "the module cannot be built for {failed} of {} kernels",
            rows.len()
        );
    }
    Ok(())
}

/// The files `vm-run --kmod` adds to the guest: the module for `kernel` and pinleak-user.
pub fn guest_files(kernel: &Kernel) -> Result<Vec<(PathBuf, String)>> {
    Ok(vec![
        (module_for(kernel)?, GUEST_MODULE.to_string()),
        (user_program()?, GUEST_USER.to_string()),
    ])
}

/// pinleak.ko for `kernel`, built (or rebuilt, if the sources changed) from the fixture, on
/// this machine or in the build root (see [`host_problems`]).
pub fn module_for(kernel: &Kernel) -> Result<PathBuf> {
    let headers = headers(kernel)?;
    let config = headers.tree.join(".config");
    let config_text =
        fs::read_to_string(&config).with_context(|| format!("cannot read {}", config.display()))?;
    let (compiler, version_text) = kernel_compiler(&config_text).ok_or_else(|| {
        anyhow!(
            "{} has no CONFIG_CC_VERSION_TEXT: cannot tell which compiler built the kernel",
            config.display()
        )
    })?;
    let build = vm_dir().join("kmod").join(&kernel.release);
    create_dir(&build)?;
    let problems = host_problems(&headers, &compiler)?;
    if problems.is_empty() {
        println!(
            "kmod: building pinleak.ko for {} with {compiler}",
            kernel.release
        );
        build_on_host(&headers, &build, &compiler)
    } else {
        println!(
            "kmod: this machine cannot build modules for {} ({}): building in the Debian 13 build root",
            kernel.release,
            problems.join("; ")
        );
        build_in_root(kernel, &headers, &build, &compiler, &version_text).with_context(|| {
            format!(
                "pinleak.ko cannot be built for {} on this machine ({}), nor in the build root",
                kernel.release,
                problems.join("; ")
            )
        })
    }
}

fn build_on_host(headers: &Headers, build: &Path, compiler: &str) -> Result<PathBuf> {
    for name in MODULE_SOURCES {
        copy_if_changed(&fixture_dir().join(name), &build.join(name))?;
    }
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(&headers.tree)
        .arg(format!("M={}", build.display()))
        .arg(format!("CC={compiler}"))
        .arg("modules")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = capture(&mut make)?;
    built_module(&out, &describe(&make), build)
}

/// Builds in the build root's `/build/pinleak/<release>` and copies the .ko out to `build`.
fn build_in_root(
    kernel: &Kernel,
    headers: &Headers,
    build: &Path,
    compiler: &str,
    version_text: &str,
) -> Result<PathBuf> {
    let root = BuildRoot::ensure()?;
    if !root.has_program(compiler) {
        bail!(
            "the kernel was built with {version_text}, and the build root has no {compiler} either"
        );
    }
    root.install_headers(&kernel.release, &headers.root)?;
    let inside = format!("/build/pinleak/{}", kernel.release);
    let dir = root.host_path(&inside);
    create_dir(&dir)?;
    for name in MODULE_SOURCES {
        copy_if_changed(&fixture_dir().join(name), &dir.join(name))?;
    }
    println!(
        "kmod: building pinleak.ko for {} with {compiler} in the build root",
        kernel.release
    );
    let (out, command) = root.make(&[
        "-C".to_string(),
        format!("/usr/src/{}", kernels::headers_package(kernel)),
        format!("M={inside}"),
        format!("CC={compiler}"),
        "modules".to_string(),
    ])?;
    let ko = built_module(&out, &command, &dir)?;
    let copied = build.join("pinleak.ko");
    copy_if_changed(&ko, &copied)?;
    Ok(copied)
}

/// `dir`/pinleak.ko once make succeeded, or why not with the end of make's output.
fn built_module(out: &Output, command: &str, dir: &Path) -> Result<PathBuf> {
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{command} failed ({}):\n{}",
            out.status,
            last_lines(&log, 15)
        );
    }
    let ko = dir.join("pinleak.ko");
    if !ko.exists() {
        bail!(
            "{command} succeeded but left no {}:\n{}",
            ko.display(),
            last_lines(&log, 15)
        );
    }
    Ok(ko)
}

/// pinleak-user, a static binary (it runs in the guests' busybox initramfs), rebuilt when its
/// sources are newer.
pub fn user_program() -> Result<PathBuf> {
    let dir = vm_dir().join("kmod");
    create_dir(&dir)?;
    let binary = dir.join("pinleak-user");
    let sources: Vec<PathBuf> = USER_SOURCES.iter().map(|s| fixture_dir().join(s)).collect();
    let built = mtime(&binary);
    if built.is_some() && sources.iter().all(|s| mtime(s) <= built) {
        return Ok(binary);
    }
    run_cmd(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&binary)
            .arg(&sources[0]),
    )
    .context("cannot build pinleak-user (gcc and libc6-dev come with cargo xtask setup)")?;
    Ok(binary)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Copies only when the contents differ, so that make sees an unchanged source as up to date.
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(new.as_slice()) {
        write(to, new)?;
    }
    Ok(())
}

/// An unpacked headers package with the packages it needs.
struct Headers {
    /// `target/vm/headers/<release>`: the unpacked packages (`usr/`) and their list.
    root: PathBuf,
    /// `<root>/usr/src/linux-headers-<release>`: what `make -C` gets.
    tree: PathBuf,
    /// `<root>/usr/lib/linux-kbuild-*`: the kbuild programs (fixdep, modpost, objtool).
    kbuild: Vec<PathBuf>,
}

/// The headers of `kernel`, downloaded and unpacked unless cached.
fn headers(kernel: &Kernel) -> Result<Headers> {
    let root = vm_dir().join("headers").join(&kernel.release);
    if !root.join("packages").exists() {
        fetch_headers(kernel, &root)?;
    }
    let tree = root.join("usr/src").join(kernels::headers_package(kernel));
    let kbuild = fs::read_dir(root.join("usr/lib"))
        .with_context(|| format!("cannot list {}", root.join("usr/lib").display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-kbuild-"))
        })
        .collect();
    Ok(Headers { root, tree, kbuild })
}

/// Downloads `linux-headers-<release>` and the dependencies kbuild reads, unpacks them into
/// `root` (through a scratch directory renamed at the end) and points the tree's Makefile,
/// which includes the common headers by absolute path, at the unpacked copy.
fn fetch_headers(kernel: &Kernel, root: &Path) -> Result<()> {
    let name = kernels::headers_package(kernel);
    // Not cmd::output: its stderr is the terminal's, and apt-cache's "E: No packages found"
    // would come before the error that explains it.
    let shown = kernels::apt_command("apt-cache")?
        .args(["show", "--no-all-versions"])
        .arg(&name)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .ok_or_else(|| no_headers_error(kernel))?;
    let stanza = kernels::parse_deb822(&shown)
        .into_iter()
        .next()
        .ok_or_else(|| no_headers_error(kernel))?;
    let version = stanza
        .get("Version")
        .ok_or_else(|| anyhow!("apt-cache show {name} printed no Version"))?;
    let mut wanted = vec![format!("{name}={version}")];
    wanted.extend(kbuild_dependencies(
        stanza.get("Depends").map_or("", String::as_str),
    ));

    let parent = root.parent().expect("headers live in a directory");
    let partial = parent.join(format!(".{}.partial", kernel.release));
    let debs = parent.join(format!(".{}.debs", kernel.release));
    for dir in [&partial, &debs] {
        let _ = fs::remove_dir_all(dir);
        create_dir(dir)?;
    }
    println!("kmod: downloading {}", wanted.join(" "));
    run_cmd(
        kernels::apt_command("apt-get")?
            .args(["download", "-qq"])
            .args(&wanted)
            .current_dir(&debs)
            .stdout(Stdio::null()),
    )
    .with_context(|| format!("cannot download the headers of {}", kernel.release))?;
    let mut unpacked = Vec::new();
    for deb in fs::read_dir(&debs)?.flatten().map(|e| e.path()) {
        run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
        unpacked.push(
            deb.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    unpacked.sort();
    let makefile = partial.join("usr/src").join(&name).join("Makefile");
    let text = fs::read_to_string(&makefile)
        .with_context(|| format!("{name} has no {}", makefile.display()))?;
    let root_str = root
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", root.display()))?;
    write(&makefile, relocate_makefile(&text, root_str))?;
    fs::write(partial.join("packages"), unpacked.join("\n") + "\n")?;
    let _ = fs::remove_dir_all(&debs);
    let _ = fs::remove_dir_all(root);
    fs::rename(&partial, root)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), root.display()))
}

/// Why there is no headers package, with the mirror's releases of the series that have one.
fn no_headers_error(kernel: &Kernel) -> anyhow::Error {
    let others = kernels::apt_command("apt-cache")
        .and_then(|mut c| output(c.args(["pkgnames", "linux-headers-"])))
        .unwrap_or_default();
    let prefix = format!("linux-headers-{}.", kernel.series);
    let mut same_series: Vec<&str> = others
        .lines()
        .filter(|n| n.starts_with(&prefix) && n.ends_with("-cloud-amd64"))
        .collect();
    same_series.sort();
    anyhow::Error::new(NoHeaders(format!(
        "the package lists have no {} (the mirror keeps the image of {} but not its headers); \
         headers of series {}: {}",
        kernels::headers_package(kernel),
        kernel.release,
        kernel.series,
        if same_series.is_empty() {
            "none".to_string()
        } else {
            same_series.join(" ")
        }
    )))
}

/// The one reason a kernel of the matrix may go without the module: its headers package is not
/// to be had (the full matrix requires the module scenarios on every other kernel).
#[derive(Debug)]
pub struct NoHeaders(String);

impl std::fmt::Display for NoHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoHeaders {}

impl NoHeaders {
    /// Whether `error` (or an error it wraps) is a [`NoHeaders`].
    pub fn is_cause_of(error: &anyhow::Error) -> bool {
        error.chain().any(|e| e.is::<NoHeaders>())
    }
}

/// The packages of a headers package's Depends field that kbuild needs: the common headers
/// and the kbuild programs, pinned to the version asked for when there is one (`name=version`).
/// The compiler (gcc-N, linux-compiler-*) comes from this machine or the build root.
fn kbuild_dependencies(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|alternatives| {
            let first = alternatives.split('|').next()?.trim();
            let (name, constraint) = match first.split_once('(') {
                Some((n, c)) => (n.trim(), Some(c.trim_end_matches(')').trim())),
                None => (first, None),
            };
            if !(name.starts_with("linux-headers-") || name.starts_with("linux-kbuild-")) {
                return None;
            }
            Some(match constraint.and_then(|c| c.strip_prefix("=")) {
                Some(version) => format!("{name}={}", version.trim()),
                None => name.to_string(),
            })
        })
        .collect()
}

/// The tree's Makefile includes `/usr/src/linux-headers-*-common/Makefile` (and from 7.x sets
/// KBUILD_OUTPUT under /usr/src): make those paths point into `root`.
fn relocate_makefile(text: &str, root: &str) -> String {
    text.replace(" /usr/src/", &format!(" {root}/usr/src/"))
        .replace("=/usr/src/", &format!("={root}/usr/src/"))
}

/// Why this machine cannot build modules for the kernel of `headers` (none: it can): the
/// kernel's compiler missing, or kbuild programs that need a newer C library than it has.
fn host_problems(headers: &Headers, compiler: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if find_in_path(compiler).is_none() {
        problems.push(format!(
            "no {compiler}, the kernel's compiler (modules must be built with it: its flags, \
             e.g. gcc 14's -fmin-function-alignment, are not all known to an older gcc)"
        ));
    }
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for dir in &headers.kbuild {
        for program in elf_files(dir)? {
            for need in unresolved_needs(&program)? {
                missing.entry(need).or_default().push(
                    program
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    for (need, mut programs) in missing {
        programs.sort();
        problems.push(format!(
            "kbuild programs ({}) cannot run here: {need}",
            programs.join(", ")
        ));
    }
    Ok(problems)
}

/// The compiler command and its version text from the kernel's .config, e.g.
/// ("x86_64-linux-gnu-gcc-14", "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0").
fn kernel_compiler(config: &str) -> Option<(String, String)> {
    let text = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))?
        .trim_matches('"');
    let compiler = text.split_whitespace().next()?;
    Some((compiler.to_string(), text.to_string()))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// The ELF executables under `dir` (recursively).
fn elf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
        {
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && fs::read(&path).is_ok_and(|b| b.starts_with(b"\x7fELF")) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What the dynamic loader cannot satisfy for `program`, as `ldd` says it (e.g.
/// "version `GLIBC_2.38' not found (required by ...)" becomes "needs GLIBC_2.38 (libc.so.6)").
fn unresolved_needs(program: &Path) -> Result<Vec<String>> {
    let mut ldd = Command::new("ldd");
    ldd.arg(program);
    let out = capture(&mut ldd)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse_ldd_unresolved(&text))
}

/// The "not found" lines of ldd's output, shortened: "needs GLIBC_2.38 (libc.so.6)" for a
/// missing symbol version, "needs libfoo.so.1" for a missing library.
fn parse_ldd_unresolved(ldd: &str) -> Vec<String> {
    let mut needs: Vec<String> = ldd
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("not found"))
        .filter_map(|l| {
            if let Some((before, rest)) = l.split_once("version `") {
                // "<program>: <library>: version `GLIBC_2.38' not found (required by ...)"
                let version = rest.split_once('\'')?.0;
                let lib = before.trim_end_matches([' ', ':']).rsplit(": ").next()?;
                let lib = Path::new(lib).file_name()?.to_string_lossy();
                Some(format!("needs {version} ({lib})"))
            } else {
                // "\tlibfoo.so.9 => not found"
                let lib = l.split("=>").next()?.trim();
                Some(format!("needs {lib}"))
            }
        })
        .collect();
    needs.sort();
    needs.dedup();
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_dependencies_of_real_headers_packages() {
        // linux-headers-6.1.0-56-cloud-amd64
        assert_eq!(
            kbuild_dependencies(
                "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), \
                 linux-compiler-gcc-12-x86"
            ),
            [
                "linux-headers-6.1.0-56-common=6.1.192-2",
                "linux-kbuild-6.1"
            ]
        );
        // linux-headers-6.12.117+deb13-cloud-amd64: an image alternative and gcc are not ours.
        assert_eq!(
            kbuild_dependencies(
                "linux-base (>= 4.12~), linux-headers-6.12.117+deb13-common (= 6.12.117-1), \
                 linux-image-6.12.117+deb13-cloud-amd64 (= 6.12.117-1) | \
                 linux-image-6.12.117+deb13-cloud-amd64-unsigned (= 6.12.117-1), \
                 linux-kbuild-6.12.117+deb13, gcc-14"
            ),
            [
                "linux-headers-6.12.117+deb13-common=6.12.117-1",
                "linux-kbuild-6.12.117+deb13"
            ]
        );
    }

    #[test]
    fn makefile_paths_point_into_the_unpacked_tree() {
        let text = "KBUILD_OUTPUT=/usr/src/linux-headers-7.3.4+deb13-cloud-amd64\n\
                    include /usr/src/linux-headers-7.3.4+deb13-common/Makefile\n";
        assert_eq!(
            relocate_makefile(text, "/h/7.3"),
            "KBUILD_OUTPUT=/h/7.3/usr/src/linux-headers-7.3.4+deb13-cloud-amd64\n\
             include /h/7.3/usr/src/linux-headers-7.3.4+deb13-common/Makefile\n"
        );
    }

    #[test]
    fn the_kernels_compiler_comes_from_its_config() {
        let config = "CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n\
                      CONFIG_CC_IS_GCC=y\n";
        assert_eq!(
            kernel_compiler(config),
            Some((
                "x86_64-linux-gnu-gcc-14".to_string(),
                "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0".to_string()
            ))
        );
        assert_eq!(kernel_compiler("CONFIG_CC_IS_GCC=y\n"), None);
    }

    #[test]
    fn ldd_failures_become_short_reasons() {
        let ldd = "\
/x/objtool.real-x86: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by /x/objtool.real-x86)
\tlinux-vdso.so.1 (0x00007ffd)
\tlibelf.so.1 => /lib/x86_64-linux-gnu/libelf.so.1 (0x00007f)
\tlibfoo.so.9 => not found
";
        assert_eq!(
            parse_ldd_unresolved(ldd),
            ["needs GLIBC_2.38 (libc.so.6)", "needs libfoo.so.9"]
        );
        assert!(parse_ldd_unresolved("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n").is_empty());
    }
}
