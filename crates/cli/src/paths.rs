//! Default locations of the key and config files, per system:
//!
//! | system | config file | key file |
//! |---|---|---|
//! | Linux | `$XDG_CONFIG_HOME/mycelium/mycelium.toml` (else `~/.config`) | `$XDG_DATA_HOME/mycelium/priv_key.bin` (else `~/.local/share`) |
//! | macOS | `~/Library/Application Support/ThreeFold Tech/Mycelium/mycelium.toml` | the same directory, `priv_key.bin` |
//! | Windows | Known Folder RoamingAppData `\ThreeFold Tech\Mycelium\mycelium.toml` | Known Folder LocalAppData `\ThreeFold Tech\Mycelium\priv_key.bin` |
//!
//! On Windows the folders come from the system (`SHGetKnownFolderPath`), not from
//! the `APPDATA` and `LOCALAPPDATA` variables, as upstream does.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A system's way of laying out the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `<base>/mycelium/<file>`: Linux and other Unix systems.
    Xdg,
    /// `<base>/ThreeFold Tech/Mycelium/<file>`: macOS and Windows.
    Vendor,
}

impl Layout {
    /// This system's layout.
    pub(crate) const HERE: Self = if cfg!(any(target_os = "macos", windows)) {
        Self::Vendor
    } else {
        Self::Xdg
    };

    /// The directory the files live in, under a base directory.
    pub(crate) fn app_dir(self, base: &Path) -> PathBuf {
        match self {
            Self::Xdg => base.join("mycelium"),
            Self::Vendor => base.join("ThreeFold Tech").join("Mycelium"),
        }
    }
}

/// The key file's default path. Its directory is created if missing, as upstream
/// does.
pub(crate) fn default_key_file() -> anyhow::Result<PathBuf> {
    let dir = Layout::HERE.app_dir(&bases::data()?);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating key directory {}", dir.display()))?;
    Ok(dir.join("priv_key.bin"))
}

/// The config file's default path.
pub(crate) fn default_config_file() -> anyhow::Result<PathBuf> {
    Ok(Layout::HERE
        .app_dir(&bases::config()?)
        .join("mycelium.toml"))
}

/// Base directories on Linux and other Unix systems: the XDG variables when set to
/// an absolute path (the XDG specification says relative values are to be ignored),
/// else under `$HOME`.
#[cfg(not(any(target_os = "macos", windows)))]
mod bases {
    use std::env;
    use std::path::PathBuf;

    use anyhow::bail;

    pub(super) fn config() -> anyhow::Result<PathBuf> {
        xdg_dir("XDG_CONFIG_HOME", ".config")
    }

    pub(super) fn data() -> anyhow::Result<PathBuf> {
        xdg_dir("XDG_DATA_HOME", ".local/share")
    }

    fn xdg_dir(var: &str, home_relative: &str) -> anyhow::Result<PathBuf> {
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
}

/// Base directories on macOS (Application Support for both) and Windows (the
/// roaming and local AppData Known Folders).
#[cfg(any(target_os = "macos", windows))]
mod bases {
    use std::path::PathBuf;

    use anyhow::Context;

    const WHY: &str = "the system names no home or AppData folder; pass the file with its option";

    pub(super) fn config() -> anyhow::Result<PathBuf> {
        dirs::config_dir().context(WHY)
    }

    pub(super) fn data() -> anyhow::Result<PathBuf> {
        dirs::data_local_dir().context(WHY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_keeps_files_in_a_mycelium_directory() {
        let base = Path::new("/home/u/.config");
        assert_eq!(
            Layout::Xdg.app_dir(base),
            Path::new("/home/u/.config/mycelium")
        );
    }

    #[test]
    fn macos_and_windows_keep_files_under_the_vendor_name() {
        let base = Path::new("/Users/u/Library/Application Support");
        assert_eq!(
            Layout::Vendor.app_dir(base),
            Path::new("/Users/u/Library/Application Support/ThreeFold Tech/Mycelium")
        );
    }

    #[test]
    fn this_system_uses_its_layout() {
        let want = if cfg!(any(target_os = "macos", windows)) {
            Layout::Vendor
        } else {
            Layout::Xdg
        };
        assert_eq!(Layout::HERE, want);
    }
}
