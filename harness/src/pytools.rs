//! Python tools from PyPI that tests run (such as schemathesis), each in a
//! virtual environment of its own under the cache (`$SLUICE_CACHE/venv-NAME`),
//! installed on first use with pip and kept while its requirements stay the same.

use crate::cache::cache_dir;
use anyhow::Context;
use std::path::PathBuf;
use std::process::Command;

/// The `bin` directory of virtual environment `name` with `requirements`
/// (pip requirement specifiers, such as `schemathesis==4.32.5`) installed;
/// creates it with `python3 -m venv` and pip on first use. Fails when
/// `python3` or PyPI cannot be reached.
pub fn venv(name: &str, requirements: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join(format!("venv-{name}"));
    let stamp = dir.join("requirements.txt");
    let wanted: String = requirements.iter().map(|r| format!("{r}\n")).collect();
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(dir.join("bin"));
    }
    eprintln!(
        "installing {} into {}...",
        requirements.join(" "),
        dir.display()
    );
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))
        .context("cannot create a Python virtual environment (is python3 with venv installed?)")?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(requirements))
    .with_context(|| format!("cannot install {} from PyPI", requirements.join(" ")))?;
    std::fs::write(&stamp, wanted)?;
    Ok(dir.join("bin"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
