//! `inspect` and `generate-keys`: the subcommands that work on keys locally.

use std::path::Path;

use anyhow::bail;
use mycelium_proto::{PublicKey, SecretKey};

use crate::key_file;

/// Prints the public key and address of `key`, or of the key file's key.
pub(crate) fn inspect(key: Option<PublicKey>, key_path: &Path, json: bool) -> anyhow::Result<()> {
    let key = match key {
        Some(k) => k,
        None => match key_file::load(key_path)? {
            Some(sk) => sk.public_key(),
            None => bail!("no key to inspect and key file not found"),
        },
    };
    println!("{}", render(&key, json));
    Ok(())
}

fn render(key: &PublicKey, json: bool) -> String {
    if json {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Inspected {
            public_key: String,
            address: String,
        }
        let doc = Inspected {
            public_key: key.to_string(),
            address: key.address().to_string(),
        };
        serde_json::to_string_pretty(&doc).expect("a struct of two strings serialises")
    } else {
        format!("Public key: {key}\nAddress: {}", key.address())
    }
}

/// Writes a fresh key unless one exists and `force` is not given.
pub(crate) fn generate_keys(key_path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && key_path.exists() {
        tracing::warn!(
            key_file = %key_path.display(),
            "key file already exists; pass --force to replace it"
        );
        return Ok(());
    }
    let key = SecretKey::generate(&mut rand_core::OsRng);
    key_file::save(key_path, &key, force)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_forms_match_upstream() {
        let key: PublicKey = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            .parse()
            .unwrap();
        assert_eq!(
            render(&key, false),
            "Public key: 07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c\n\
             Address: 5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e"
        );
        assert_eq!(
            render(&key, true),
            "{\n  \"publicKey\": \"07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c\",\n  \"address\": \"5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e\"\n}"
        );
    }
}
