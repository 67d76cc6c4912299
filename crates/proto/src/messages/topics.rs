//! Topic access control and forward sockets: which sources may
//! start a message on which topic, and which topics go to a local Unix socket
//! instead of the inbox.
//!
//! [`TopicConfig`] is plain data the API edits at run time and the bus
//! consults for every new inbound message. [`TopicConfig::from_toml`] reads the
//! `--topic-config` file, both the table form and the legacy
//! `topic = ["subnet", …]` form (which makes upstream v0.7.10 panic at start).
//! Unlike upstream, which silently falls back to the default configuration on any
//! error, it reports the first bad line; the caller decides what to do with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::subnet::Subnet;
use crate::wire::message::MAX_TOPIC_LEN;

/// Per-topic settings of a whitelisted topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRule {
    /// Sources allowed to send on this topic. Empty: nobody.
    pub sources: Vec<Subnet>,
    /// Unix socket completed messages on this topic are handed to.
    pub forward_socket: Option<PathBuf>,
}

/// The default action and the whitelist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    default_accept: bool,
    whitelist: BTreeMap<Vec<u8>, TopicRule>,
}

impl Default for TopicConfig {
    /// Accept every topic from everyone, no forward sockets: upstream's default.
    fn default() -> Self {
        Self {
            default_accept: true,
            whitelist: BTreeMap::new(),
        }
    }
}

/// A topic configuration file that cannot be used, with the line it went wrong on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic configuration line {line}: {message}")]
pub struct TopicConfigError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl TopicConfig {
    /// Whether a non-reply message on `topic` from `src` may start: a listed
    /// topic needs a source subnet containing `src`; an unlisted one follows the
    /// default action.
    pub fn allows(&self, topic: &[u8], src: IpAddr) -> bool {
        match self.whitelist.get(topic) {
            Some(rule) => rule.sources.iter().any(|s| s.contains_ip(src)),
            None => self.default_accept,
        }
    }

    /// Whether unlisted topics are accepted.
    pub fn default_accept(&self) -> bool {
        self.default_accept
    }

    /// Sets the action for unlisted topics.
    pub fn set_default_accept(&mut self, accept: bool) {
        self.default_accept = accept;
    }

    /// The whitelisted topics, in byte order.
    pub fn topics(&self) -> impl Iterator<Item = &[u8]> {
        self.whitelist.keys().map(Vec::as_slice)
    }

    /// The rule of a whitelisted topic.
    pub fn rule(&self, topic: &[u8]) -> Option<&TopicRule> {
        self.whitelist.get(topic)
    }

    /// Whitelists `topic` with no sources, unless it already is (idempotent).
    pub fn add_topic(&mut self, topic: Vec<u8>) {
        self.whitelist.entry(topic).or_default();
    }

    /// Removes `topic` from the whitelist with its sources and forward socket.
    pub fn remove_topic(&mut self, topic: &[u8]) {
        self.whitelist.remove(topic);
    }

    /// The sources of a whitelisted topic; `None` if it is not whitelisted.
    pub fn sources(&self, topic: &[u8]) -> Option<&[Subnet]> {
        self.whitelist.get(topic).map(|r| r.sources.as_slice())
    }

    /// Allows `subnet` on `topic`, whitelisting the topic if needed. Adding a subnet
    /// twice keeps one copy.
    pub fn add_source(&mut self, topic: Vec<u8>, subnet: Subnet) {
        let rule = self.whitelist.entry(topic).or_default();
        if !rule.sources.contains(&subnet) {
            rule.sources.push(subnet);
        }
    }

    /// Removes `subnet` (exactly as added) from `topic`; nothing if absent.
    pub fn remove_source(&mut self, topic: &[u8], subnet: &Subnet) {
        if let Some(rule) = self.whitelist.get_mut(topic) {
            rule.sources.retain(|s| s != subnet);
        }
    }

    /// The forward socket of `topic`, if it is whitelisted and has one.
    pub fn forward_socket(&self, topic: &[u8]) -> Option<&Path> {
        self.whitelist.get(topic)?.forward_socket.as_deref()
    }

    /// Sets the forward socket of a whitelisted topic. Returns false, changing
    /// nothing, if the topic is not whitelisted (upstream ignores it silently).
    pub fn set_forward_socket(&mut self, topic: &[u8], path: PathBuf) -> bool {
        match self.whitelist.get_mut(topic) {
            Some(rule) => {
                rule.forward_socket = Some(path);
                true
            }
            None => false,
        }
    }

    /// Removes the forward socket of `topic`.
    pub fn clear_forward_socket(&mut self, topic: &[u8]) {
        if let Some(rule) = self.whitelist.get_mut(topic) {
            rule.forward_socket = None;
        }
    }

    /// Reads a `--topic-config` file. Returns the configuration and a
    /// warning for every key it ignored.
    pub fn from_toml(text: &str) -> Result<(Self, Vec<String>), TopicConfigError> {
        use toml::de::{DeTable, DeValue};

        let line_of = |at: usize| text.get(..at).map_or(1, |s| s.matches('\n').count() + 1);
        let err = |at: usize, message: String| TopicConfigError {
            line: line_of(at),
            message,
        };
        let root = DeTable::parse(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            err(at, e.message().to_owned())
        })?;
        let mut config = TopicConfig::default();
        let mut warnings = Vec::new();
        for (key, value) in root.get_ref() {
            let name: &str = key.get_ref();
            let at = key.span().start;
            if name == "default" {
                config.default_accept = match value.get_ref().as_str() {
                    Some("Accept") => true,
                    Some("Reject") => false,
                    _ => {
                        return Err(err(
                            value.span().start,
                            "`default` must be \"Accept\" or \"Reject\"".to_owned(),
                        ))
                    }
                };
                continue;
            }
            if name.len() > MAX_TOPIC_LEN {
                return Err(err(
                    at,
                    format!("topic {name:?} is longer than {MAX_TOPIC_LEN} bytes"),
                ));
            }
            let mut rule = TopicRule::default();
            let subnets = match value.get_ref() {
                // Legacy form: `topic = ["subnet", …]`.
                DeValue::Array(_) => Some(value),
                DeValue::Table(table) => {
                    let mut subnets = None;
                    for (k, v) in table {
                        match &**k.get_ref() {
                            "subnets" => subnets = Some(v),
                            "forward_socket" => match v.get_ref().as_str() {
                                Some(p) => rule.forward_socket = Some(PathBuf::from(p)),
                                None => {
                                    return Err(err(
                                        v.span().start,
                                        format!(
                                            "forward_socket of topic {name:?} must be a string"
                                        ),
                                    ))
                                }
                            },
                            other => warnings.push(format!(
                                "line {}: unknown key {other:?} in topic {name:?} ignored",
                                line_of(k.span().start)
                            )),
                        }
                    }
                    subnets
                }
                _ => {
                    return Err(err(
                        value.span().start,
                        format!("topic {name:?} must be a table or a list of subnets"),
                    ))
                }
            };
            if let Some(subnets) = subnets {
                let Some(list) = subnets.get_ref().as_array() else {
                    return Err(err(
                        subnets.span().start,
                        format!("subnets of topic {name:?} must be a list of strings"),
                    ));
                };
                for item in list.iter() {
                    let s = item.get_ref().as_str().ok_or_else(|| {
                        err(
                            item.span().start,
                            format!("subnets of topic {name:?} must be strings"),
                        )
                    })?;
                    let subnet: Subnet = s
                        .parse()
                        .map_err(|e| err(item.span().start, format!("bad subnet {s:?}: {e}")))?;
                    if !rule.sources.contains(&subnet) {
                        rule.sources.push(subnet);
                    }
                }
            }
            config.whitelist.insert(name.as_bytes().to_vec(), rule);
        }
        Ok((config, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_accepts_everything() {
        let c = TopicConfig::default();
        assert!(c.allows(b"x", ip("400::1")));
    }

    #[test]
    fn listed_topic_accepts_only_its_sources() {
        let mut c = TopicConfig::default();
        c.add_source(b"chat".to_vec(), "5a6:f0c6::/32".parse().unwrap());
        assert!(c.allows(b"chat", ip("5a6:f0c6::9")));
        assert!(!c.allows(b"chat", ip("5a7::9")));
        assert!(c.allows(b"other", ip("5a7::9")));
        c.set_default_accept(false);
        assert!(!c.allows(b"other", ip("5a7::9")));
    }

    #[test]
    fn listed_topic_without_sources_rejects_everyone() {
        let mut c = TopicConfig::default();
        c.add_topic(b"closed".to_vec());
        assert!(!c.allows(b"closed", ip("400::1")));
    }

    #[test]
    fn ipv4_sources_never_match_overlay_traffic() {
        let mut c = TopicConfig::default();
        c.add_source(b"t".to_vec(), "0.0.0.0/0".parse().unwrap());
        assert!(!c.allows(b"t", ip("400::1")));
    }

    #[test]
    fn forward_socket_needs_a_whitelisted_topic() {
        let mut c = TopicConfig::default();
        assert!(!c.set_forward_socket(b"t", "/x".into()));
        assert_eq!(c.forward_socket(b"t"), None);
        c.add_topic(b"t".to_vec());
        assert!(c.set_forward_socket(b"t", "/x".into()));
        assert_eq!(c.forward_socket(b"t"), Some(Path::new("/x")));
        c.clear_forward_socket(b"t");
        assert_eq!(c.forward_socket(b"t"), None);
    }

    #[test]
    fn sources_are_removed_exactly_as_added() {
        let mut c = TopicConfig::default();
        let s: Subnet = "400::/7".parse().unwrap();
        c.add_source(b"t".to_vec(), s);
        c.add_source(b"t".to_vec(), s);
        assert_eq!(c.sources(b"t"), Some(&[s][..]));
        c.remove_source(b"t", &s);
        assert_eq!(c.sources(b"t"), Some(&[][..]));
        assert_eq!(c.sources(b"u"), None);
    }

    #[test]
    fn spec_example_file_parses() {
        let text = r#"
# Action for topics that are not listed below
default = "Reject"

[chat]
subnets = ["400::/7"]
forward_socket = "/run/myapp/chat.sock"

["sensor.readings"]
subnets = ["5a6:f0c6:f365:177d::/64", "4a1:acf3:2837:d9cf:d930:4520:c759:467b"]

[empty]
"#;
        let (c, warnings) = TopicConfig::from_toml(text).unwrap();
        assert!(warnings.is_empty());
        assert!(!c.default_accept());
        assert_eq!(
            c.forward_socket(b"chat"),
            Some(Path::new("/run/myapp/chat.sock"))
        );
        let sensor = c.sources(b"sensor.readings").unwrap();
        assert_eq!(sensor.len(), 2);
        assert_eq!(sensor[1].prefix_len(), 128);
        assert_eq!(c.sources(b"empty"), Some(&[][..]));
        assert!(c.allows(b"chat", ip("4ff::1")));
        assert!(!c.allows(b"other", ip("4ff::1")));
    }

    #[test]
    fn legacy_list_form_is_accepted() {
        let (c, _) = TopicConfig::from_toml("old = [\"400::/7\", \"10.0.0.1\"]\n").unwrap();
        let s = c.sources(b"old").unwrap();
        assert_eq!(s[1].to_string(), "10.0.0.1/32");
        assert!(c.default_accept());
    }

    #[test]
    fn errors_name_the_line() {
        let e = TopicConfig::from_toml(
            "default = \"Accept\"\n[t]\nsubnets = [\"400::/7\", \"nope\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("nope"), "{e}");
        let e = TopicConfig::from_toml("\n\ndefault = \"accept\"\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = TopicConfig::from_toml("a = 1\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = TopicConfig::from_toml("x = [\n").unwrap_err();
        assert!(e.line >= 1);
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let (c, w) = TopicConfig::from_toml("[t]\nsubnet = [\"400::/7\"]\n").unwrap();
        assert_eq!(c.sources(b"t"), Some(&[][..]));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("line 2"), "{w:?}");
    }
}
