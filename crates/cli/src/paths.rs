//! Default locations of the key and config files (CLI.md §5, §6).

use std::env;
use std::path::PathBuf;

use anyhow::{bail, Context};

const APP_DIR: &str = "mycelium";

/// `$XDG_DATA_HOME/mycelium/priv_key.bin`, falling back to `~/.local/share`. The
/// directory is created if missing, as upstream does.
pub(crate) fn default_key_file() -> anyhow::Result<PathBuf> {
    let dir = xdg_dir("XDG_DATA_HOME", ".local/share")?.join(APP_DIR);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating key directory {}", dir.display()))?;
    Ok(dir.join("priv_key.bin"))
}

/// `$XDG_CONFIG_HOME/mycelium/mycelium.toml`, falling back to `~/.config`.
pub(crate) fn default_config_file() -> anyhow::Result<PathBuf> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?
        .join(APP_DIR)
        .join("mycelium.toml"))
}

fn xdg_dir(var: &str, home_relative: &str) -> anyhow::Result<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(dir) = env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(dir);
    }
    match env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(home_relative)),
        None => bail!("neither ${var} nor $HOME is set; pass the file with its option"),
    }
}
