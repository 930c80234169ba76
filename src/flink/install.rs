//! Where Java and Flink's jars come from.
//!
//! Flink: `FLINK_HOME` (a Flink distribution: its `lib/` holds `flink-dist-*.jar`), else the PyPI
//! package `apache-flink-libraries` (Flink's jars, ~350 MB), installed with pip on first use into
//! `$CKPTLAB_FLINK_HOME` (default `~/.cache/ckptlab/flink`). Java: `JAVA_HOME`, else `java` and
//! `javac` on PATH, version 17 or newer (Flink 2 needs 17).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use thiserror::Error;

use super::FLINK_VERSION;

/// What the bridge needs and did not find, each with how to get it.
#[derive(Debug, Error)]
pub enum InstallError {
    #[error("Java 17 or newer is needed to run Flink {FLINK_VERSION}: {0}. Install a JDK (e.g. `apt-get install openjdk-17-jdk-headless`) and put `java` and `javac` on PATH, or set JAVA_HOME")]
    Java(String),
    #[error("FLINK_HOME = {home}: {problem} (a Flink 2.x distribution has lib/flink-dist-<version>.jar; unset FLINK_HOME to let ckptlab install Flink {FLINK_VERSION}'s jars from PyPI)")]
    FlinkHome { home: String, problem: String },
    #[error("cannot install Flink {FLINK_VERSION}'s jars into {dir}: {problem}. ckptlab runs `python3 -m pip install --no-deps --target DIR apache-flink-libraries=={FLINK_VERSION}`: it needs python3 with pip (e.g. `apt-get install python3-pip`) and access to PyPI; or set FLINK_HOME to a Flink 2.x distribution")]
    Pip { dir: String, problem: String },
}

/// A usable JDK.
#[derive(Debug, Clone)]
pub struct Java {
    pub java: PathBuf,
    pub javac: PathBuf,
    pub major: u32,
}

/// Flink's jars.
#[derive(Debug, Clone)]
pub struct FlinkJars {
    /// The directory holding flink-dist-*.jar and the rest of Flink's lib/.
    pub lib: PathBuf,
    pub version: String,
    /// Where they came from, for the output ("FLINK_HOME", "cache", "installed now in 41.2s").
    pub origin: String,
    /// How long the first-use install took (None: nothing was installed).
    pub install_secs: Option<f64>,
}

/// The cache for Flink's jars and the compiled harness: `$CKPTLAB_FLINK_HOME`, else
/// `$XDG_CACHE_HOME/ckptlab/flink`, else `~/.cache/ckptlab/flink`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPTLAB_FLINK_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = match (std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()), std::env::var_os("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".cache"),
        (None, None) => std::env::temp_dir(),
    };
    base.join("ckptlab").join("flink")
}

/// Finds a JDK 17+ (`JAVA_HOME`, else PATH).
pub fn find_java() -> Result<Java, InstallError> {
    let (java, javac) = match std::env::var_os("JAVA_HOME").filter(|p| !p.is_empty()) {
        Some(home) => {
            let bin = PathBuf::from(&home).join("bin");
            (bin.join("java"), bin.join("javac"))
        }
        None => (PathBuf::from("java"), PathBuf::from("javac")),
    };
    let out = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|e| InstallError::Java(format!("`{} -version` cannot run ({e})", java.display())))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let major =
        java_major(&text).ok_or_else(|| InstallError::Java(format!("cannot read the version from `java -version`: {}", text.trim())))?;
    if major < 17 {
        return Err(InstallError::Java(format!("{} is Java {major}", java.display())));
    }
    Command::new(&javac).arg("-version").output().map_err(|e| {
        InstallError::Java(format!("`{}` cannot run ({e}): a JRE is not enough, the harness is compiled on first use", javac.display()))
    })?;
    Ok(Java { java, javac, major })
}

/// The major version in `java -version`'s output (`version "17.0.9"` -> 17, `"1.8.0"` -> 8).
pub fn java_major(text: &str) -> Option<u32> {
    let start = text.find("version \"")? + "version \"".len();
    let rest = &text[start..];
    let v = &rest[..rest.find('"')?];
    let mut parts = v.split(['.', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// The Flink version of a lib/ directory, from its flink-dist jar's name.
pub fn dist_version(lib: &Path) -> Option<String> {
    std::fs::read_dir(lib).ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix("flink-dist-").and_then(|r| r.strip_suffix(".jar")).map(str::to_string)
    })
}

/// What the first-use install of Flink's jars says while a run waits for it.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallProgress {
    /// The install began: a long wait (~350 MB), first use only.
    Installing { target: PathBuf },
    /// The install ended after `secs`.
    Installed { secs: f64 },
}

impl std::fmt::Display for InstallProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallProgress::Installing { target } => {
                write!(f, "installing Flink {FLINK_VERSION}'s jars (~350 MB) into {}, first use only", target.display())
            }
            InstallProgress::Installed { secs } => write!(f, "installed Flink {FLINK_VERSION}'s jars in {secs:.1}s"),
        }
    }
}

/// Flink's jars: `FLINK_HOME`, else the cache, else installed now (`progress` hears why it waits).
pub fn find_or_install_flink(progress: &mut dyn FnMut(InstallProgress)) -> Result<FlinkJars, InstallError> {
    if let Some(home) = std::env::var_os("FLINK_HOME").filter(|p| !p.is_empty()) {
        let home = PathBuf::from(home);
        let bad = |problem: String| InstallError::FlinkHome { home: home.display().to_string(), problem };
        let lib = home.join("lib");
        let version = dist_version(&lib).ok_or_else(|| bad("no lib/flink-dist-*.jar".into()))?;
        if !version.starts_with("2.") {
            return Err(bad(format!("Flink {version}; the bridge needs Flink 2.x (its source and sink APIs)")));
        }
        return Ok(FlinkJars { lib, version, origin: format!("FLINK_HOME ({})", home.display()), install_secs: None });
    }
    let cache = cache_dir();
    let target = cache.join(format!("apache-flink-libraries-{FLINK_VERSION}"));
    let lib = target.join("pyflink").join("lib");
    let complete = target.join(".complete");
    if complete.is_file() && dist_version(&lib).is_some() {
        return Ok(FlinkJars { lib, version: FLINK_VERSION.into(), origin: format!("cache ({})", target.display()), install_secs: None });
    }
    let pip_err = |problem: String| InstallError::Pip { dir: target.display().to_string(), problem };
    progress(InstallProgress::Installing { target: target.clone() });
    let started = Instant::now();
    // Into a scratch directory first: an interrupted install never looks complete.
    let partial = target.with_extension(format!("partial-{}", std::process::id()));
    let _ = crate::workdir::remove_tree_under(&cache, &partial);
    std::fs::create_dir_all(&partial).map_err(|e| pip_err(format!("cannot create {}: {e}", partial.display())))?;
    let status = Command::new("python3")
        // pip's warning about running as root says nothing about this install.
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .args(["-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--no-input", "--quiet", "--target"])
        .arg(&partial)
        .arg(format!("apache-flink-libraries=={FLINK_VERSION}"))
        .status()
        .map_err(|e| pip_err(format!("`python3 -m pip` cannot run ({e})")))?;
    if !status.success() {
        let _ = crate::workdir::remove_tree_under(&cache, &partial);
        return Err(pip_err(format!("pip exited with {status}")));
    }
    if dist_version(&partial.join("pyflink").join("lib")).is_none() {
        let _ = crate::workdir::remove_tree_under(&cache, &partial);
        return Err(pip_err("pip finished but pyflink/lib/flink-dist-*.jar is not there".into()));
    }
    if complete.is_file() {
        // Another run installed them meanwhile (its JVM may be reading them): keep that copy.
        let _ = crate::workdir::remove_tree_under(&cache, &partial);
        return Ok(FlinkJars { lib, version: FLINK_VERSION.into(), origin: format!("cache ({})", target.display()), install_secs: None });
    }
    // A target without `.complete` is an install that was cut short.
    let _ = crate::workdir::remove_tree_under(&cache, &target);
    std::fs::rename(&partial, &target).map_err(|e| pip_err(format!("cannot move {} into place: {e}", partial.display())))?;
    std::fs::write(&complete, FLINK_VERSION).map_err(|e| pip_err(format!("cannot write {}: {e}", complete.display())))?;
    let secs = started.elapsed().as_secs_f64();
    progress(InstallProgress::Installed { secs });
    Ok(FlinkJars {
        lib,
        version: FLINK_VERSION.into(),
        origin: format!("installed now into {} ({secs:.1}s)", target.display()),
        install_secs: Some(secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions_are_read_old_and_new() {
        assert_eq!(java_major("openjdk version \"17.0.9\" 2023-10-17"), Some(17));
        assert_eq!(java_major("java version \"1.8.0_381\""), Some(8));
        assert_eq!(java_major("openjdk version \"21\" 2023-09-19"), Some(21));
        assert_eq!(java_major("no version here"), None);
    }

    #[test]
    fn a_lib_dir_tells_its_flink_version() {
        let d = std::env::temp_dir().join(format!("ckptlab-dist-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("flink-dist-2.3.0.jar"), b"").unwrap();
        assert_eq!(dist_version(&d).as_deref(), Some("2.3.0"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
