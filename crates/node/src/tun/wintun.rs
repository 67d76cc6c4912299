//! Finding `wintun.dll` on Windows before the device layer loads it, so that a
//! missing DLL is reported by name with what to do, rather than as a bare
//! "module not found" (upstream prints `LibLoading(LoadLibraryExW { ... code: 126 })`).
//!
//! The directories are those Windows searches for a DLL loaded by name, in its
//! order: the program's own directory, System32, the Windows directory, the
//! current directory, then `PATH`. Kept apart from the device so that it is tested
//! on every system.

#![cfg_attr(not(windows), allow(dead_code))]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The Wintun driver's DLL.
pub(crate) const DLL: &str = "wintun.dll";

/// Bytes in each of the adapter's two packet rings: 8 MiB holds several thousand
/// full-size packets, ample for one node (Wintun allows 128 KiB to 64 MiB).
pub(crate) const RING_CAPACITY: u32 = 0x80_0000;

/// Where Windows looks for a DLL loaded by name, in order.
pub(crate) fn search_dirs(
    exe_dir: Option<&Path>,
    system_root: Option<&Path>,
    current_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(exe_dir.map(Path::to_path_buf));
    if let Some(root) = system_root {
        dirs.push(root.join("System32"));
        dirs.push(root.to_path_buf());
    }
    dirs.extend(current_dir.map(Path::to_path_buf));
    if let Some(path) = path_var.and_then(OsStr::to_str) {
        // `PATH` on Windows separates with `;`, and entries may be quoted.
        dirs.extend(
            path.split(';')
                .map(|d| d.trim().trim_matches('"'))
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        );
    }
    dirs
}

/// The first of `dirs` that holds the DLL, by `exists`.
pub(crate) fn locate(dirs: &[PathBuf], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(DLL)).find(|p| exists(p))
}

/// The DLL this process would load, or the directories looked in.
pub(crate) fn locate_here() -> Result<PathBuf, Vec<PathBuf>> {
    let exe = std::env::current_exe().ok();
    let system_root = std::env::var_os("SystemRoot").map(PathBuf::from);
    let current = std::env::current_dir().ok();
    let path = std::env::var_os("PATH");
    let dirs = search_dirs(
        exe.as_deref().and_then(Path::parent),
        system_root.as_deref(),
        current.as_deref(),
        path.as_deref(),
    );
    locate(&dirs, Path::is_file).ok_or(dirs)
}

/// What a user is told when the DLL is nowhere to be found.
pub(crate) fn missing_message(looked: &[PathBuf]) -> String {
    let first = looked.first().map_or_else(
        || "the program's directory".to_owned(),
        |d| d.display().to_string(),
    );
    format!(
        "{DLL} not found (looked in {} directories, first {first}): download Wintun from \
         https://www.wintun.net/, put bin\\amd64\\{DLL} beside mycelium.exe, and run \
         again from an administrator prompt; or run with --no-tun",
        looked.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_in_the_order_windows_does() {
        let dirs = search_dirs(
            Some(Path::new("C:\\Program Files\\Mycelium")),
            Some(Path::new("C:\\Windows")),
            Some(Path::new("D:\\work")),
            Some(OsStr::new("C:\\tools;;\"C:\\quoted dir\" ; C:\\bin")),
        );
        let want: Vec<PathBuf> = [
            "C:\\Program Files\\Mycelium".into(),
            Path::new("C:\\Windows").join("System32"),
            "C:\\Windows".into(),
            "D:\\work".into(),
            "C:\\tools".into(),
            "C:\\quoted dir".into(),
            "C:\\bin".into(),
        ]
        .to_vec();
        assert_eq!(dirs, want);
    }

    #[test]
    fn finds_the_first_directory_holding_the_dll() {
        let dirs: Vec<PathBuf> = vec!["a".into(), "b".into(), "c".into()];
        let in_b_and_c = |p: &Path| p.starts_with("b") || p.starts_with("c");
        assert_eq!(locate(&dirs, in_b_and_c), Some(Path::new("b").join(DLL)));
        assert_eq!(locate(&dirs, |_| false), None);
    }

    #[test]
    fn the_missing_message_names_the_file_and_the_remedy() {
        let m = missing_message(&["C:\\Mycelium".into(), "C:\\Windows".into()]);
        assert!(m.starts_with("wintun.dll not found"), "{m}");
        assert!(m.contains("C:\\Mycelium") && m.contains("wintun.net") && m.contains("--no-tun"));
    }
}
