//! Choosing a macOS utun name, as upstream does: a free `utunN` asked for is used;
//! a taken or malformed one gives way to the lowest free `utunN`, with a warning,
//! instead of failing. (System services often hold utun0 to utun3.)
//!
//! Kept apart from the device so that it is tested on every system.

#![cfg_attr(not(target_os = "macos"), allow(dead_code))]

/// Longest interface name macOS accepts, in bytes (`IFNAMSIZ` less the NUL).
const MAX_NAME_LEN: usize = 15;

/// What becomes of the name asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Used as asked.
    AsAsked,
    /// Not `utun` and a number: this free name instead.
    Invalid(String),
    /// In use: this free name instead.
    Taken(String),
}

impl Choice {
    /// The name to create.
    pub(crate) fn name<'a>(&'a self, asked: &'a str) -> &'a str {
        match self {
            Self::AsAsked => asked,
            Self::Invalid(n) | Self::Taken(n) => n,
        }
    }
}

/// The unit number of a well-formed utun name: `utun` then a decimal number
/// without sign or leading zeros, at most 15 bytes in all.
///
/// Upstream also takes `utun01` or `utun+1`; the kernel then creates `utun1`, the
/// later look-up of the name asked for fails and the node does not start. We treat
/// such names as malformed and pick a free one.
pub(crate) fn unit(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("utun")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if name.len() > MAX_NAME_LEN || !canonical {
        return None;
    }
    // The kernel's control unit is the number plus one.
    digits.parse::<u32>().ok().filter(|&n| n < u32::MAX)
}

/// Picks the name to create for `asked`, given the interface names in use.
pub(crate) fn choose(asked: &str, existing: &[String]) -> Choice {
    let taken: Vec<u32> = existing.iter().filter_map(|n| unit(n)).collect();
    let first_free = || {
        let n = (0..).find(|n| !taken.contains(n)).unwrap_or(0);
        format!("utun{n}")
    };
    match unit(asked) {
        None => Choice::Invalid(first_free()),
        Some(n) if taken.contains(&n) => Choice::Taken(first_free()),
        Some(_) => Choice::AsAsked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(units: &[u32]) -> Vec<String> {
        units.iter().map(|n| format!("utun{n}")).collect()
    }

    #[test]
    fn well_formed_names() {
        assert_eq!(unit("utun0"), Some(0));
        assert_eq!(unit("utun9"), Some(9));
        assert_eq!(unit("utun4294967294"), Some(4_294_967_294));
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "utun", "utunx", "tun0", "mycelium", "utun01", "utun+1", "utun-1", "utun 1",
        ] {
            assert_eq!(unit(bad), None, "{bad:?}");
        }
        // Over 15 bytes, and a unit the kernel cannot number.
        assert_eq!(unit("utun123456789012"), None);
        assert_eq!(unit("utun4294967295"), None);
        assert_eq!(unit("utun12345678901"), None);
    }

    #[test]
    fn first_free_unit_replaces_a_taken_name() {
        assert_eq!(
            choose("utun0", &names(&[0, 1, 3])),
            Choice::Taken("utun2".into())
        );
        assert_eq!(
            choose("utun1", &names(&[0, 1, 2])),
            Choice::Taken("utun3".into())
        );
        assert_eq!(choose("utun0", &names(&[])), Choice::AsAsked);
        assert_eq!(choose("utun0", &names(&[1])), Choice::AsAsked);
        assert_eq!(choose("utun9", &names(&[0, 1, 2, 3])), Choice::AsAsked);
    }

    #[test]
    fn first_free_unit_replaces_a_malformed_name() {
        assert_eq!(
            choose("mycelium", &names(&[])),
            Choice::Invalid("utun0".into())
        );
        assert_eq!(
            choose("utun", &names(&[1])),
            Choice::Invalid("utun0".into())
        );
        assert_eq!(
            choose("utun01", &names(&[0, 1])),
            Choice::Invalid("utun2".into())
        );
        // Malformed names in use do not count as units.
        let existing = vec!["utun01".to_owned(), "en0".to_owned(), "utun0".to_owned()];
        assert_eq!(choose("x", &existing), Choice::Invalid("utun1".into()));
    }

    #[test]
    fn the_choice_names_what_to_create() {
        assert_eq!(Choice::AsAsked.name("utun7"), "utun7");
        assert_eq!(Choice::Taken("utun2".into()).name("utun0"), "utun2");
    }
}
