//! `message send` and `message receive` over
//! `/api/v1/messages`.
//!
//! Topics and payloads travel as base64. When printing a message, each is shown as
//! text if its bytes are UTF-8 and as the node's base64 otherwise, as upstream does
//! (so the printed form alone cannot tell `aGk=` the text from `hi` the bytes).

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use super::args::{Destination, ReceiveArgs, SendArgs, FOREVER_SECS};
use super::http::Api;

/// Escapes a query value, base64's `+`, `/` and `=` included. (Upstream sends the
/// base64 topic unescaped, so a `+` in it arrives as a space and the node refuses
/// the topic; escaping it is what the node expects.)
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The request body of a send or a reply (MessageSendInfo).
#[derive(Debug, Serialize)]
struct MessageSendInfo {
    dst: Dst,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    payload: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Dst {
    Ip(String),
    Pk(String),
}

/// A received message as the node sends it (MessageReceiveInfo).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageReceiveInfo {
    id: String,
    src_ip: String,
    src_pk: String,
    dst_ip: String,
    dst_pk: String,
    #[serde(default)]
    topic: Option<String>,
    payload: String,
}

/// A received message as we print it: topic and payload decoded where they are
/// text, the payload left out when it went to a file.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Printed<'a> {
    id: &'a str,
    src_ip: &'a str,
    src_pk: &'a str,
    dst_ip: &'a str,
    dst_pk: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

/// `{"id": …}`: a sent message whose reply was not waited for, or did not come.
#[derive(Debug, Serialize, Deserialize)]
struct MessageId {
    id: String,
}

/// `message send`: returns what to print.
pub(crate) fn send(api: &Api, args: SendArgs) -> anyhow::Result<Vec<u8>> {
    let payload = match (&args.msg_path, &args.message) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("reading the message from {}", path.display()))?,
        (None, Some(text)) => text.as_bytes().to_vec(),
        (None, None) => bail!("give a message, or a file with --msg-path"),
    };
    let body = MessageSendInfo {
        dst: match args.destination {
            Destination::Ip(ip) => Dst::Ip(ip.to_string()),
            Destination::Key(pk) => Dst::Pk(pk.to_string()),
        },
        topic: args.topic.as_ref().map(|t| BASE64.encode(t.as_bytes())),
        payload: BASE64.encode(&payload),
    };

    if let Some(id) = &args.reply_to {
        api.post_json(&format!("messages/reply/{id}"), &body)?
            .expect(&[200, 204], &format!("replying to message {id}"))?;
        return Ok(Vec::new());
    }

    const WHAT: &str = "sending the message";
    let answer = if args.wait {
        let timeout = args.timeout.unwrap_or(FOREVER_SECS);
        api.post_json(&format!("messages?reply_timeout={timeout}"), &body)?
    } else {
        api.post_json("messages", &body)?
    };
    match answer.status {
        // Sent (201), or sent and no reply in time (408): the id, to look it up.
        201 | 408 => {
            let id: MessageId = answer.json(WHAT)?;
            Ok(json_line(&id)?)
        }
        200 => {
            let reply: MessageReceiveInfo = answer.json(WHAT)?;
            Ok(json_line(&printable(&reply, true))?)
        }
        _ => Err(answer.error(WHAT)),
    }
}

/// `message receive`: returns what to print.
pub(crate) fn receive(api: &Api, args: ReceiveArgs) -> anyhow::Result<Vec<u8>> {
    const WHAT: &str = "receiving a message";
    let mut query = format!("messages?timeout={}", args.timeout);
    if let Some(topic) = &args.topic {
        let topic = BASE64.encode(topic.as_bytes());
        query.push_str("&topic=");
        query.extend(utf8_percent_encode(&topic, QUERY_VALUE));
    }
    let answer = api.get(&query)?.expect(&[200, 204], WHAT)?;
    if answer.status == 204 {
        // Nothing arrived in time: not a failure.
        return Ok(Vec::new());
    }
    let msg: MessageReceiveInfo = answer.json(WHAT)?;
    if let Some(path) = &args.msg_path {
        let payload = decode(&msg.payload).context("the message's payload is not base64")?;
        std::fs::write(path, payload)
            .with_context(|| format!("writing the message to {}", path.display()))?;
        if args.raw {
            return Ok(Vec::new());
        }
        return json_line(&printable(&msg, false));
    }
    if args.raw {
        let mut payload = decode(&msg.payload).context("the message's payload is not base64")?;
        payload.push(b'\n');
        return Ok(payload);
    }
    json_line(&printable(&msg, true))
}

fn printable(msg: &MessageReceiveInfo, with_payload: bool) -> Printed<'_> {
    Printed {
        id: &msg.id,
        src_ip: &msg.src_ip,
        src_pk: &msg.src_pk,
        dst_ip: &msg.dst_ip,
        dst_pk: &msg.dst_pk,
        topic: msg.topic.as_deref().map(text_or_base64),
        payload: with_payload.then(|| text_or_base64(&msg.payload)),
    }
}

/// The bytes `b64` encodes, shown as text if they are UTF-8; otherwise `b64` itself.
fn text_or_base64(b64: &str) -> String {
    match decode(b64).map(String::from_utf8) {
        Some(Ok(text)) => text,
        _ => b64.to_owned(),
    }
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    BASE64.decode(b64).ok()
}

fn json_line(value: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).context("printing JSON")?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_is_decoded_and_binary_stays_base64() {
        assert_eq!(text_or_base64("aGVsbG8="), "hello");
        assert_eq!(text_or_base64("/w=="), "/w==");
        assert_eq!(text_or_base64("not base64!"), "not base64!");
    }

    #[test]
    fn printed_messages_keep_the_apis_field_order() {
        let msg: MessageReceiveInfo = serde_json::from_str(
            r#"{"id":"2bb231c50d01428d","srcIp":"466::1","srcPk":"aa","dstIp":"54f::1",
                "dstPk":"bb","payload":"aGVsbG8gd29ybGQ="}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json_line(&printable(&msg, true)).unwrap()).unwrap(),
            "{\"id\":\"2bb231c50d01428d\",\"srcIp\":\"466::1\",\"srcPk\":\"aa\",\
             \"dstIp\":\"54f::1\",\"dstPk\":\"bb\",\"payload\":\"hello world\"}\n"
        );
        let without = serde_json::to_string(&printable(&msg, false)).unwrap();
        assert!(!without.contains("payload"), "{without}");
    }

    #[test]
    fn destinations_are_tagged_ip_or_pk() {
        let body = MessageSendInfo {
            dst: Dst::Ip("5a6::1".into()),
            topic: None,
            payload: "aGk=".into(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"dst":{"ip":"5a6::1"},"payload":"aGk="}"#
        );
    }
}
