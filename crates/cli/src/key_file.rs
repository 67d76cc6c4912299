//! The key file: exactly 32 raw bytes, readable by its owner
//! only.
//!
//! Upstream accepts files longer than 32 bytes and writes new ones with mode 0640;
//! we refuse any other length, so a truncated or mistaken file is never half-used,
//! and write new keys with mode 0600, since the file is the node's identity.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context};
use mycelium_proto::identity::KEY_LEN;
use mycelium_proto::SecretKey;

/// Reads the key at `path`. `Ok(None)` if there is no file.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<SecretKey>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading key file {}", path.display())),
    };
    let Ok(key) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) else {
        bail!(
            "key file {} holds {} bytes; a key file holds exactly {KEY_LEN}",
            path.display(),
            bytes.len()
        );
    };
    Ok(Some(SecretKey::from_bytes(key)))
}

/// Writes `key` to `path` with mode 0600. Fails if the file exists, unless
/// `replace`, in which case the new key goes to a temporary file first and replaces
/// the old one atomically.
pub(crate) fn save(path: &Path, key: &SecretKey, replace: bool) -> anyhow::Result<()> {
    let target = if replace {
        path.with_extension("tmp")
    } else {
        path.to_path_buf()
    };
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&target)
        .with_context(|| format!("creating key file {}", target.display()))?;
    file.write_all(&key.to_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing key file {}", target.display()))?;
    if replace {
        fs::rename(&target, path)
            .with_context(|| format!("replacing key file {}", path.display()))?;
    }
    Ok(())
}

/// Loads the key at `path`, or creates and saves a new one if there is none
/// (logging a warning, as upstream does).
pub(crate) fn load_or_create(path: &Path) -> anyhow::Result<SecretKey> {
    if let Some(key) = load(path)? {
        return Ok(key);
    }
    tracing::warn!(
        key_file = %path.display(),
        "no key file found; generating a new key"
    );
    let key = SecretKey::generate(&mut rand_core::OsRng);
    save(path, &key, false)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("priv_key.bin");
        let key = load_or_create(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create(&path).unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn key_file_of_wrong_length_is_refused_with_its_length() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 31, 33, 64] {
            let path = dir.path().join(format!("k{len}"));
            fs::write(&path, vec![1u8; len]).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("holds {len} bytes")), "{err}");
            // Nothing is overwritten.
            assert!(load_or_create(&path).is_err());
            assert_eq!(fs::read(&path).unwrap().len(), len);
        }
    }

    #[test]
    fn save_refuses_to_clobber_without_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = SecretKey::from_bytes([1; 32]);
        let b = SecretKey::from_bytes([2; 32]);
        save(&path, &a, false).unwrap();
        assert!(save(&path, &b, false).is_err());
        save(&path, &b, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), vec![2; 32]);
    }
}
