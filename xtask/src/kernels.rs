//! Stock Debian cloud-amd64 kernels for the VM tests: resolve the newest of each series,
//! download the one .deb that holds the kernel image, and cache the image.
//!
//! The machine's own apt setup is never touched: every apt call goes through a private
//! configuration under `<workspace>/target/vm/apt/` (its own sources, lists, cache and an empty
//! dpkg status), with the mirror taken from the machine's `debian.sources`. Package lists are
//! refreshed at most once a day; a kernel already extracted under
//! `<workspace>/target/vm/kernels/<release>/` is never downloaded again.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{capture, describe, output, run};
use crate::files::{create_dir, write};
use crate::paths::vm_dir;

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Major.minor, e.g. "6.1" or "7.3" (also for a kernel requested as "newest").
    pub series: String,
    /// What `uname -r` prints in the guest, e.g. "6.1.0-56-cloud-amd64".
    pub release: String,
    /// Debian version of the package the image came from, e.g. "6.1.192-2".
    pub package_version: String,
    pub vmlinuz: PathBuf,
    /// The kernel's .config, when the package (or its small `linux-base-*` companion) has it.
    pub config: Option<PathBuf>,
}

/// The series the VM tests cover by default.
pub const DEFAULT_SERIES: [&str; 4] = ["6.1", "6.12", "6.18", "newest"];

/// Every kernel package name ends with this flavour.
const FLAVOUR: &str = "-cloud-amd64";

/// 6.1 lives in bookworm(-security), 6.12 in trixie(-security) and bookworm-backports, newer
/// series only in trixie-backports.
const MAIN_SUITES: [&str; 4] = [
    "bookworm",
    "bookworm-backports",
    "trixie",
    "trixie-backports",
];
const SECURITY_SUITES: [&str; 2] = ["bookworm-security", "trixie-security"];

/// Package lists younger than this are used without asking the mirror.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Resolves each series ("6.1", "6.12", "6.18", any other major.minor, an exact release such
/// as "6.12.117+deb13-cloud-amd64", or "newest" for the newest kernel of any series) to the
/// newest kernel the mirror has, downloading and extracting it unless it is cached.
pub fn resolve(series: &[&str]) -> Result<Vec<Kernel>> {
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let apt = Apt::prepare()?;
    let catalog = Catalog::load(&apt)?;
    series
        .iter()
        .map(|s| {
            let release = catalog.pick(s)?;
            fetch(&apt, &catalog, release)
        })
        .collect()
}

/// The kernel of one series (as [`resolve`] takes it), downloaded unless cached.
pub fn resolve_one(series: &str) -> Result<Kernel> {
    Ok(resolve(&[series])?.remove(0))
}

/// Name of the Debian package with the headers (and, through its dependencies, the kbuild
/// tools) to build an out-of-tree module for `kernel`. Fetch it with [`apt_command`].
pub fn headers_package(kernel: &Kernel) -> String {
    format!("linux-headers-{}", kernel.release)
}

/// `apt-get` or `apt-cache` set up to use the private configuration, with package lists at most
/// a day old. For fetching packages other than kernel images (e.g. headers): run
/// `apt_command("apt-get")?.args(["download", name]).current_dir(dir)`.
pub fn apt_command(program: &str) -> Result<Command> {
    Ok(Apt::prepare()?.command(program))
}

/// Where extracted kernels live: one directory per release.
fn kernels_dir() -> PathBuf {
    vm_dir().join("kernels")
}

/// The private apt configuration.
struct Apt {
    root: PathBuf,
}

impl Apt {
    /// Writes the configuration (if changed) and refreshes the lists if older than a day.
    fn prepare() -> Result<Apt> {
        let apt = Apt {
            root: vm_dir().join("apt"),
        };
        apt.write_config()?;
        apt.ensure_lists()?;
        Ok(apt)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", self.path("apt.conf"));
        cmd
    }

    fn write_config(&self) -> Result<()> {
        for dir in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "etc/trusted.gpg.d",
            "lists/partial",
            "cache/archives/partial",
            "state",
            "log",
            "debs",
        ] {
            create_dir(&self.path(dir))?;
        }
        let status = self.path("state/status");
        if !status.exists() {
            // An empty dpkg status: apt must not see (or care about) what the machine has installed.
            fs::write(&status, "")
                .with_context(|| format!("cannot create {}", status.display()))?;
        }
        let sources = sources_list()?;
        let sources_path = self.path("etc/sources.list");
        if fs::read_to_string(&sources_path).ok().as_deref() != Some(sources.as_str()) {
            write(&sources_path, &sources)?;
            // Different sources: the lists we have do not describe them.
            let _ = fs::remove_file(self.path("lists-updated"));
        }
        write(&self.path("apt.conf"), self.apt_conf())
    }

    fn apt_conf(&self) -> String {
        let p = |rel: &str| self.path(rel).display().to_string();
        let mut conf = String::from(
            "// Generated by cargo xtask: a private apt for downloading test kernels.\n",
        );
        for (key, value) in [
            // Not even the machine's apt.conf.d: its hooks (e.g. docker-clean) would act on the
            // machine's apt state, and it disables the package cache that keeps apt-cache fast.
            ("Dir::Etc::Parts", p("etc/apt.conf.d")),
            ("Dir::Etc::Main", p("etc/apt.conf")),
            ("Dir::Etc::SourceList", p("etc/sources.list")),
            ("Dir::Etc::SourceParts", p("etc/sources.list.d")),
            ("Dir::Etc::Preferences", p("etc/preferences")),
            ("Dir::Etc::PreferencesParts", p("etc/preferences.d")),
            ("Dir::Etc::Trusted", p("etc/trusted.gpg")),
            ("Dir::Etc::TrustedParts", p("etc/trusted.gpg.d")),
            ("Dir::State", p("state")),
            ("Dir::State::Lists", p("lists")),
            ("Dir::State::status", p("state/status")),
            ("Dir::Cache", p("cache")),
            ("Dir::Cache::Archives", p("cache/archives")),
            ("Dir::Cache::pkgcache", p("cache/pkgcache.bin")),
            ("Dir::Cache::srcpkgcache", String::new()),
            ("Dir::Log", p("log")),
            ("APT::Architecture", "amd64".into()),
            ("APT::Architectures", "amd64".into()),
            ("Acquire::Languages", "none".into()),
            // Keeps the lists compressed on disk: 10 MB instead of 60.
            ("Acquire::GzipIndexes", "true".into()),
            // Downloads land in directories the unprivileged _apt user cannot write.
            ("APT::Sandbox::User", "root".into()),
        ] {
            conf.push_str(&format!("{key} \"{value}\";\n"));
        }
        // Network settings (proxies, validity checks) still come from the machine.
        conf.push_str(&inherited_acquire_settings());
        conf
    }

    fn ensure_lists(&self) -> Result<()> {
        let stamp = self.path("lists-updated");
        let age = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if age.is_some_and(|a| a < LISTS_MAX_AGE) {
            return Ok(());
        }
        println!(
            "kernels: refreshing the private package lists ({}, {})",
            MAIN_SUITES.join(", "),
            SECURITY_SUITES.join(", ")
        );
        // --error-on=any: by default a failed fetch is only a warning and apt-get exits 0.
        match run(self.command("apt-get").args(["update", "-qq", "--error-on=any"])) {
            Ok(()) => write(&stamp, ""),
            Err(e) if self.has_lists() => {
                eprintln!(
                    "kernels: warning: cannot refresh the package lists ({e:#}); using the ones from before"
                );
                Ok(())
            }
            Err(e) => Err(e.context(format!(
                "cannot download the Debian package lists into {}: check the network and the mirror in /etc/apt/sources.list.d/debian.sources",
                self.path("lists").display()
            ))),
        }
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.path("lists")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    /// Downloads `package` into the scratch directory, printing one line, and returns the .deb.
    fn download(&self, package: &Package) -> Result<PathBuf> {
        let dir = self.path("debs");
        println!(
            "kernels: downloading {} {} ({:.1} MB)",
            package.name,
            package.version,
            package.size as f64 / 1e6
        );
        let prefix = format!("{}_", package.name);
        let ours = |p: &Path| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        };
        // Leftovers of an interrupted run would be mistaken for this download.
        for stale in fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| ours(p))
        {
            fs::remove_file(&stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
        run(self
            .command("apt-get")
            .args(["download", "-qq"])
            .arg(format!("{}={}", package.name, package.version))
            .current_dir(&dir)
            .stdout(Stdio::null()))
        .with_context(|| format!("cannot download {}", package.name))?;
        fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| ours(p))
            .ok_or_else(|| {
                anyhow!(
                    "apt-get download {} left no .deb in {}",
                    package.name,
                    dir.display()
                )
            })
    }
}

/// One line per suite, in the one-line sources format, mirrors taken from the machine.
fn sources_list() -> Result<String> {
    const FILE: &str = "/etc/apt/sources.list.d/debian.sources";
    let text = fs::read_to_string(FILE).with_context(|| {
        format!("cannot read {FILE}: the test kernels are fetched from the machine's Debian mirror")
    })?;
    let stanzas = parse_deb822(&text);
    let is_security = |s: &HashMap<String, String>| {
        s.get("Suites")
            .is_some_and(|suites| suites.contains("-security"))
    };
    let main = stanzas
        .iter()
        .find(|s| !is_security(s) && s.contains_key("URIs"))
        .ok_or_else(|| anyhow!("{FILE} has no stanza with URIs: for the main archive"))?;
    let security = stanzas
        .iter()
        .find(|s| is_security(s) && s.contains_key("URIs"))
        .ok_or_else(|| anyhow!("{FILE} has no stanza with URIs: for the security archive"))?;
    let mut list = String::new();
    for (stanza, suites) in [(main, &MAIN_SUITES[..]), (security, &SECURITY_SUITES[..])] {
        let uri = stanza["URIs"].split_whitespace().next().unwrap_or_default();
        let keyring = stanza
            .get("Signed-By")
            .map(String::as_str)
            .unwrap_or("/usr/share/keyrings/debian-archive-keyring.gpg");
        for suite in suites {
            list.push_str(&format!("deb [signed-by={keyring}] {uri} {suite} main\n"));
        }
    }
    Ok(list)
}

/// Fields of each stanza of a deb822 file (comments dropped, continuation lines joined).
pub fn parse_deb822(text: &str) -> Vec<HashMap<String, String>> {
    let mut stanzas = vec![HashMap::new()];
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(HashMap::new());
            last_key = None;
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some(key) = &last_key {
                let value: &mut String =
                    stanzas.last_mut().unwrap().entry(key.clone()).or_default();
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_string();
            stanzas
                .last_mut()
                .unwrap()
                .insert(key.clone(), value.trim().to_string());
            last_key = Some(key);
        }
    }
    stanzas.retain(|s| !s.is_empty());
    stanzas
}

/// The machine's proxy and validity-check settings, in apt.conf syntax.
fn inherited_acquire_settings() -> String {
    let Ok(dump) = output(
        Command::new("apt-config")
            .arg("dump")
            .env_remove("APT_CONFIG"),
    ) else {
        return String::new();
    };
    dump.lines()
        .filter(|l| {
            [
                "Acquire::http",
                "Acquire::https",
                "Acquire::Check-",
                "Acquire::Retries",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A binary package as the lists describe it.
#[derive(Clone, Debug)]
struct Package {
    name: String,
    version: String,
    size: u64,
}

/// Every cloud-amd64 kernel release the lists know, with the packages that carry its image.
struct Catalog {
    /// Release -> packages named after it (image, binary, base), by name.
    releases: BTreeMap<String, HashMap<String, Package>>,
}

impl Catalog {
    fn load(apt: &Apt) -> Result<Catalog> {
        let names: Vec<String> = output(apt.command("apt-cache").args(["pkgnames", "linux-"]))?
            .lines()
            .filter(|n| package_release(n).is_some())
            .map(String::from)
            .collect();
        if names.is_empty() {
            bail!(
                "the package lists in {} name no *{FLAVOUR} kernel: is the mirror a Debian archive?",
                apt.path("lists").display()
            );
        }
        let shown = output(
            apt.command("apt-cache")
                .args(["show", "--no-all-versions"])
                .args(&names),
        )?;
        let mut releases: BTreeMap<String, HashMap<String, Package>> = BTreeMap::new();
        for stanza in parse_deb822(&shown) {
            let (Some(name), Some(version)) = (stanza.get("Package"), stanza.get("Version")) else {
                continue;
            };
            let Some(release) = package_release(name) else {
                continue;
            };
            let size = stanza.get("Size").and_then(|s| s.parse().ok()).unwrap_or(0);
            releases.entry(release.to_string()).or_default().insert(
                name.clone(),
                Package {
                    name: name.clone(),
                    version: version.clone(),
                    size,
                },
            );
        }
        Ok(Catalog { releases })
    }

    /// The newest release of `series` (see [`resolve`]).
    fn pick(&self, series: &str) -> Result<&str> {
        let matches = |release: &str| match series {
            "newest" => true,
            s if s.ends_with(FLAVOUR) => release == s,
            s => series_of(release) == s,
        };
        self.releases
            .keys()
            .filter(|r| matches(r) && self.image_package(r).is_some())
            .max_by(|a, b| self.compare(a, b))
            .map(String::as_str)
            .ok_or_else(|| {
                let mut known: Vec<String> = self.releases.keys().map(|r| series_of(r)).collect();
                known.sort_by(|a, b| compare_debian_versions(a, b));
                known.dedup();
                anyhow!(
                    "no {FLAVOUR} kernel of series {series:?} in {} or {}; series available: {}",
                    MAIN_SUITES.join(", "),
                    SECURITY_SUITES.join(", "),
                    known.join(" ")
                )
            })
    }

    /// Orders releases by the version of their packages, then by name (6.12.117+deb12 and
    /// +deb13 are different builds of the same upstream version; the trixie one sorts higher).
    fn compare(&self, a: &str, b: &str) -> Ordering {
        let version = |r: &str| {
            self.image_package(r)
                .map(|p| p.version.clone())
                .unwrap_or_default()
        };
        compare_debian_versions(&version(a), &version(b)).then_with(|| a.cmp(b))
    }

    /// The package whose .deb holds the kernel image. Up to 6.18 that is `linux-image-<release>`;
    /// from 6.19 `linux-image-*` is a meta package and the image is in `linux-binary-*`. Some
    /// releases only have the unsigned variant (e.g. 7.3.4 at first); both boot under QEMU.
    fn image_package(&self, release: &str) -> Option<&Package> {
        let packages = self.releases.get(release)?;
        [
            format!("linux-binary-{release}"),
            format!("linux-binary-unsigned-{release}"),
            format!("linux-image-{release}"),
            format!("linux-image-{release}-unsigned"),
        ]
        .iter()
        .find_map(|name| packages.get(name))
    }

    /// From 6.19 the kernel config is in `linux-base-<release>` (about 1 MB), not with the image.
    fn base_package(&self, release: &str) -> Option<&Package> {
        self.releases
            .get(release)?
            .get(&format!("linux-base-{release}"))
    }
}

/// The release a kernel package is named after, for the names that can carry an image or its
/// base files: `linux-{image,binary,binary-unsigned,base}-<release>[-unsigned]` with a release
/// like "6.1.0-56-cloud-amd64" (meta packages like `linux-image-6.12-cloud-amd64` and -dbg
/// packages are not).
fn package_release(name: &str) -> Option<&str> {
    let rest = [
        "linux-binary-unsigned-",
        "linux-binary-",
        "linux-image-",
        "linux-base-",
    ]
    .iter()
    .find_map(|p| name.strip_prefix(p))?;
    let release = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let version = release.strip_suffix(FLAVOUR)?;
    let parts: Vec<&str> = version.splitn(3, '.').collect();
    let numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    (parts.len() == 3 && parts.iter().all(|p| numeric(p))).then_some(release)
}

/// "6.1" for "6.1.0-56-cloud-amd64", "7.3" for "7.3.4+deb13-cloud-amd64".
fn series_of(release: &str) -> String {
    release.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// The cached kernel of `release`, downloading and extracting it first if needed.
fn fetch(apt: &Apt, catalog: &Catalog, release: &str) -> Result<Kernel> {
    let image = catalog
        .image_package(release)
        .expect("pick() only returns releases with an image package");
    let dir = kernels_dir().join(release);
    let kernel = Kernel {
        series: series_of(release),
        release: release.to_string(),
        package_version: image.version.clone(),
        vmlinuz: dir.join("vmlinuz"),
        config: Some(dir.join("config")).filter(|c| c.exists()),
    };
    if kernel.vmlinuz.exists() {
        return Ok(kernel);
    }
    // Extract into a scratch directory and rename it at the end, so an interrupted download
    // never looks like a cached kernel.
    let partial = kernels_dir().join(format!(".{release}.partial"));
    let _ = fs::remove_dir_all(&partial);
    create_dir(&partial)?;

    let deb = apt.download(image)?;
    let members = deb_members(&deb)?;
    let vmlinuz = members
        .iter()
        .find(|m| is_image_member(m, release))
        .ok_or_else(|| {
            anyhow!(
                "{} has no kernel image (looked for ./boot/vmlinuz-{release} and ./usr/lib/modules/{release}/vmlinuz*): has Debian changed the package layout again?",
                deb.display()
            )
        })?;
    extract_member(&deb, vmlinuz, &partial.join("vmlinuz"))?;
    match members.iter().find(|m| is_config_member(m, release)) {
        Some(config) => extract_member(&deb, config, &partial.join("config"))?,
        None => fetch_config_from_base(apt, catalog, release, &partial)?,
    }
    fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
    write(
        &partial.join("package"),
        format!("{} {}\n", image.name, image.version),
    )?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dir.display()))?;
    Ok(Kernel {
        config: Some(dir.join("config")).filter(|c| c.exists()),
        ..kernel
    })
}

/// Takes the config out of `linux-base-<release>` when the image package has none (6.19+).
/// Only a convenience: a kernel without config still boots, so failure is not an error.
fn fetch_config_from_base(apt: &Apt, catalog: &Catalog, release: &str, into: &Path) -> Result<()> {
    let Some(base) = catalog.base_package(release) else {
        return Ok(());
    };
    let deb = apt.download(base)?;
    if let Some(config) = deb_members(&deb)?
        .iter()
        .find(|m| is_config_member(m, release))
    {
        extract_member(&deb, config, &into.join("config"))?;
    }
    fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))
}

/// ./boot/vmlinuz-<release> up to 6.19; ./usr/lib/modules/<release>/vmlinuz (signed) or
/// vmlinuz.unsigned from 7.x.
fn is_image_member(member: &str, release: &str) -> bool {
    member == format!("./boot/vmlinuz-{release}")
        || member
            .strip_prefix(&format!("./usr/lib/modules/{release}/"))
            .is_some_and(|name| name.starts_with("vmlinuz") && !name.contains('/'))
}

fn is_config_member(member: &str, release: &str) -> bool {
    member == format!("./boot/config-{release}")
        || member == format!("./usr/lib/modules/{release}/config")
}

/// Paths in the data archive of `deb`, as tar names them ("./boot/...").
fn deb_members(deb: &Path) -> Result<Vec<String>> {
    let listing = fsys_tar(deb, &["-t"], Stdio::piped())?;
    Ok(listing.lines().map(String::from).collect())
}

/// Writes one member of `deb` to `dest`.
fn extract_member(deb: &Path, member: &str, dest: &Path) -> Result<()> {
    let file =
        fs::File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    fsys_tar(deb, &["-x", "-O", member], file.into())?;
    Ok(())
}

/// Runs `dpkg-deb --fsys-tarfile deb | tar <args>` with tar's stdout going to `stdout`;
/// returns what tar printed when `stdout` is piped. Avoids unpacking a whole kernel package
/// (100 MB of modules) to get one file.
fn fsys_tar(deb: &Path, args: &[&str], stdout: Stdio) -> Result<String> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let mut dpkg_child = dpkg
        .spawn()
        .with_context(|| format!("failed to start {}", describe(&dpkg)))?;
    let mut tar = Command::new("tar");
    tar.args(args)
        .stdin(dpkg_child.stdout.take().expect("stdout is piped"))
        .stdout(stdout);
    let tar_out = capture(&mut tar)?;
    let dpkg_status = dpkg_child.wait()?;
    if !dpkg_status.success() {
        bail!("{} failed: {dpkg_status}", describe(&dpkg));
    }
    if !tar_out.status.success() {
        bail!(
            "{} (reading {}) failed: {}: {}",
            describe(&tar),
            deb.display(),
            tar_out.status,
            String::from_utf8_lossy(&tar_out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&tar_out.stdout).into_owned())
}

/// Debian version ordering (epoch, upstream, revision; `~` sorts before everything), as dpkg
/// defines it, so that e.g. 6.12.117-1 > 6.12.117-1~bpo12+1 > 6.12.115-2.
fn compare_debian_versions(a: &str, b: &str) -> Ordering {
    let split = |v: &str| {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse::<u64>().unwrap_or(0), rest)
            }
            _ => (0, v),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, upstream.to_string(), revision.to_string())
    };
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_version_part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| compare_version_part(ra.as_bytes(), rb.as_bytes()))
}

/// Alternating non-digit runs (compared character by character, letters before other
/// characters, `~` before the end) and digit runs (compared as numbers).
fn compare_version_part(a: &[u8], b: &[u8]) -> Ordering {
    let weight = |c: Option<&u8>| -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(c) => i32::from(*c) + 256,
        }
    };
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i)), weight(b.get(j)));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions() {
        let lt = |a, b| compare_debian_versions(a, b) == Ordering::Less;
        assert!(lt("6.12.117-1~bpo12+1", "6.12.117-1"));
        assert!(lt("6.12.115-2", "6.12.117-1~bpo12+1"));
        assert!(lt("6.1.192-1", "6.1.192-2"));
        assert!(lt("6.19.14-1~bpo13+1", "7.0.4-1~bpo13+1"));
        assert!(lt("7.2.9-1", "7.2.12-1"));
        assert!(lt("1.0~rc1", "1.0"));
        assert!(lt("9.9", "1:0.1"));
        assert!(lt("1.0a", "1.0+"));
        assert_eq!(compare_debian_versions("1.01", "1.1"), Ordering::Equal);
    }

    #[test]
    fn release_names() {
        assert_eq!(
            package_release("linux-image-6.1.0-56-cloud-amd64"),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            package_release("linux-image-6.12.117+deb13-cloud-amd64-unsigned"),
            Some("6.12.117+deb13-cloud-amd64")
        );
        assert_eq!(
            package_release("linux-binary-unsigned-7.3.4+deb13-cloud-amd64"),
            Some("7.3.4+deb13-cloud-amd64")
        );
        assert_eq!(package_release("linux-image-6.12-cloud-amd64"), None);
        assert_eq!(package_release("linux-image-cloud-amd64"), None);
        assert_eq!(
            package_release("linux-image-6.1.0-56-cloud-amd64-dbg"),
            None
        );
        assert_eq!(series_of("6.1.0-56-cloud-amd64"), "6.1");
        assert_eq!(series_of("6.12.117+deb13-cloud-amd64"), "6.12");
    }
}
