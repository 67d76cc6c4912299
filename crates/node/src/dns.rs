//! The DNS forwarder (`--enable-dns`): answers DNS queries on UDP and TCP by
//! asking a resolver on an overlay node, chosen among fixed candidates by route
//! metric, or a fall-back resolver while no candidate is reachable.
//!
//! A selection task asks the router task every period (the first time at once)
//! for the metric of each candidate's selected route; the router sends a route
//! request for candidates it has no entry for. The best candidate is kept until
//! the next evaluation. Each query goes out over UDP from a fresh socket
//! connected to the chosen resolver, so only datagrams from that address and port
//! arrive, under an id of its own drawn at random; a reply is taken only with that
//! id and the query's question. A reply with TC set is asked again over TCP when
//! the client asked over TCP. The resolver's answer is relayed whole (RCODE,
//! flags, every section) under the client's id, cut to what the client can take
//! over UDP with TC set; silence, a broken reply or a send error give SERVFAIL.
//!
//! Parsing and encoding are hickory-proto's. Query names are logged at debug
//! level only.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::{CoreCmd, Query};
use crate::config::{DnsConfig, NodeError};

/// A DNS header's length: shorter datagrams are dropped.
const HEADER_LEN: usize = 12;
/// What a UDP client takes without EDNS (RFC 1035).
const UDP_CLASSIC: u16 = 512;
/// The most we send a UDP client, whatever its EDNS buffer says; also the most
/// we read from one.
const UDP_MAX: u16 = 4096;
/// How long a TCP client may stay silent between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How often the candidates are looked at while none is reachable.
const NOTHING_REACHABLE_RECHECK: Duration = Duration::from_secs(1);
/// Open TCP client connections at most; more are closed at once.
const TCP_CONNECTIONS: usize = 64;

/// The forwarder's sockets, bound before the node starts.
pub(crate) struct Listeners {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds the UDP and TCP listeners.
pub(crate) fn bind(cfg: &DnsConfig) -> Result<Listeners, NodeError> {
    let udp_err = |error| NodeError::Dns {
        transport: "UDP",
        addr: cfg.listen,
        error,
    };
    let tcp_err = |error| NodeError::Dns {
        transport: "TCP",
        addr: cfg.listen,
        error,
    };
    let udp = std::net::UdpSocket::bind(cfg.listen).map_err(udp_err)?;
    udp.set_nonblocking(true).map_err(udp_err)?;
    let udp = UdpSocket::from_std(udp).map_err(udp_err)?;
    let tcp = std::net::TcpListener::bind(cfg.listen).map_err(tcp_err)?;
    tcp.set_nonblocking(true).map_err(tcp_err)?;
    let tcp = TcpListener::from_std(tcp).map_err(tcp_err)?;
    Ok(Listeners { udp, tcp })
}

/// Spawns the selection task and the two listeners' tasks.
pub(crate) fn serve(
    listeners: Listeners,
    cfg: DnsConfig,
    to_core: mpsc::Sender<CoreCmd>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    tracing::info!("DNS forwarder on UDP and TCP {}", cfg.listen);
    let fwd = Arc::new(Forwarder {
        in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
        cfg,
        choice: Mutex::new(None),
    });
    tasks.spawn(select_loop(fwd.clone(), to_core, shutdown.clone()));
    tasks.spawn(udp_loop(
        fwd.clone(),
        listeners.udp,
        shutdown.clone(),
        tasks.clone(),
    ));
    tasks.spawn(tcp_loop(fwd, listeners.tcp, shutdown, tasks.clone()));
}

struct Forwarder {
    cfg: DnsConfig,
    /// The candidate the last evaluation chose; `None` means the fall-back.
    choice: Mutex<Option<Ipv6Addr>>,
    /// Client queries being answered.
    in_flight: Arc<Semaphore>,
}

impl Forwarder {
    fn target(&self) -> SocketAddr {
        let choice = *self.choice.lock().unwrap_or_else(|e| e.into_inner());
        choice.map_or(self.cfg.fallback, |a| {
            SocketAddr::new(a.into(), self.cfg.candidate_port)
        })
    }

    /// Forwards `req` for a client that takes answers of up to `limit` bytes and
    /// returns the answer for it: the resolver's under the client's id, or
    /// SERVFAIL.
    async fn forward(&self, req: &Request, limit: usize) -> Message {
        let target = self.target();
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let mut reply = match tokio::time::timeout_at(deadline, exchange(target, req)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!("DNS query {} to {target}: {e}", req.id);
                return req.failure(ResponseCode::ServFail);
            }
            Err(_) => {
                tracing::debug!("DNS query {} to {target}: no answer in time", req.id);
                return req.failure(ResponseCode::ServFail);
            }
        };
        if reply.metadata.truncation && limit > usize::from(UDP_MAX) {
            // Cut short by the resolver, and the client takes more than any UDP
            // answer (it asked over TCP): ask over TCP too, within what is left of
            // the timeout. Failing that, the cut answer. A UDP client got the
            // resolver's answer under its own EDNS size and retries over TCP itself.
            match tokio::time::timeout_at(deadline, exchange_tcp(target, req)).await {
                Ok(Ok(whole)) => reply = whole,
                Ok(Err(e)) => tracing::debug!("DNS query {} to {target} over TCP: {e}", req.id),
                Err(_) => tracing::debug!(
                    "DNS query {} to {target} over TCP: no answer in time",
                    req.id
                ),
            }
        }
        reply.metadata.id = req.id;
        reply
    }
}

/// Every period: asks the router task for the candidates' metrics and keeps the
/// best, the earlier on a tie; the router requests the routes of candidates it
/// has no entry for. While none is reachable it also looks every second between
/// the ticks, without route requests, so that a node just started moves its
/// queries onto the overlay as soon as a candidate's route arrives rather than a
/// whole period later (upstream sends them outside the overlay meanwhile).
async fn select_loop(
    fwd: Arc<Forwarder>,
    to_core: mpsc::Sender<CoreCmd>,
    shutdown: CancellationToken,
) {
    let period = fwd.cfg.period.max(Duration::from_millis(1));
    let mut last = None;
    let start = tokio::time::Instant::now();
    let (mut next, mut next_period) = (start, start);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        // Route requests only at the period's ticks, as upstream sends them.
        let now = tokio::time::Instant::now();
        let request_routes = now >= next_period;
        if request_routes {
            next_period += period;
            if next_period <= now {
                next_period = now + period;
            }
        }
        let (tx, rx) = oneshot::channel();
        let ask = CoreCmd::Query(Query::DnsCandidates {
            addrs: fwd.cfg.candidates.clone(),
            request_routes,
            reply: tx,
        });
        let metrics = tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = to_core.send(ask) => match sent {
                Ok(()) => match rx.await {
                    Ok(metrics) => metrics,
                    Err(_) => return,
                },
                Err(_) => return,
            },
        };
        let best = choose(&fwd.cfg.candidates, &metrics);
        *fwd.choice.lock().unwrap_or_else(|e| e.into_inner()) = best;
        if best != last || last.is_none() {
            match best {
                Some(a) => tracing::debug!("DNS forwarder: resolving through {a}"),
                None => tracing::debug!(
                    "DNS forwarder: no candidate reachable; resolving through {}",
                    fwd.cfg.fallback
                ),
            }
        }
        last = best;
        next = match best {
            Some(_) => next_period,
            None => next_period.min(tokio::time::Instant::now() + NOTHING_REACHABLE_RECHECK),
        };
    }
}

/// The candidate with the lowest finite metric, the earlier one on a tie.
fn choose(candidates: &[Ipv6Addr], metrics: &[Option<u16>]) -> Option<Ipv6Addr> {
    let mut best: Option<(Ipv6Addr, u16)> = None;
    for (addr, metric) in candidates.iter().zip(metrics) {
        if let Some(m) = *metric {
            if best.map_or(true, |(_, b)| m < b) {
                best = Some((*addr, m));
            }
        }
    }
    best.map(|(a, _)| a)
}

/// Sends `req`'s query to `target` once over UDP and waits for its reply.
async fn exchange(target: SocketAddr, req: &Request) -> io::Result<Message> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel hands us only datagrams from the target's address
    // and port.
    sock.connect(target).await?;
    sock.send(&req.upstream).await?;
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        let n = sock.recv(&mut buf).await?;
        match check_reply(&buf[..n], req) {
            Reply::Ours(m) => return Ok(m),
            Reply::Broken => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unreadable answer",
                ))
            }
            Reply::NotOurs => {}
        }
    }
}

/// Sends `req`'s query to `target` over TCP and reads the one reply.
async fn exchange_tcp(target: SocketAddr, req: &Request) -> io::Result<Message> {
    let mut stream = TcpStream::connect(target).await?;
    let len = u16::try_from(req.upstream.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut out = Vec::with_capacity(req.upstream.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&req.upstream);
    stream.write_all(&out).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).await?;
    match check_reply(&buf, req) {
        Reply::Ours(m) => Ok(m),
        Reply::Broken => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unreadable answer",
        )),
        Reply::NotOurs => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an answer to the query",
        )),
    }
}

/// What a datagram from the resolver is.
pub(crate) enum Reply {
    /// The answer to our query.
    Ours(Message),
    /// Has our query's id but does not parse.
    Broken,
    /// Another id, another question, or not a response: ignored.
    NotOurs,
}

/// Sorts a message from the resolver: ours when it is a response with the id
/// `req` went out under and the same question (names compared without case).
pub(crate) fn check_reply(buf: &[u8], req: &Request) -> Reply {
    if buf.len() < 2 || u16::from_be_bytes([buf[0], buf[1]]) != req.upstream_id {
        return Reply::NotOurs;
    }
    match Message::from_vec(buf) {
        Ok(m) if m.metadata.message_type == MessageType::Response => {
            let same = m.queries.len() == req.msg.queries.len()
                && m.queries.iter().zip(&req.msg.queries).all(|(a, b)| {
                    a.name() == b.name()
                        && a.query_type() == b.query_type()
                        && a.query_class() == b.query_class()
                });
            if same {
                Reply::Ours(m)
            } else {
                Reply::NotOurs
            }
        }
        Ok(_) => Reply::NotOurs,
        Err(_) => Reply::Broken,
    }
}

/// A client query accepted for forwarding.
pub(crate) struct Request {
    /// The client's id.
    id: u16,
    /// The id the query goes to the resolver under.
    upstream_id: u16,
    /// The client's message, parsed.
    msg: Message,
    /// The message to send the resolver.
    upstream: Vec<u8>,
    /// The largest answer the client takes over UDP.
    udp_limit: u16,
}

impl Request {
    /// An answer with no records and `code`, echoing the question.
    fn failure(&self, code: ResponseCode) -> Message {
        let mut m = Message::error_msg(self.id, self.msg.metadata.op_code, code);
        m.metadata.recursion_desired = self.msg.metadata.recursion_desired;
        m.metadata.checking_disabled = self.msg.metadata.checking_disabled;
        m.queries = self.msg.queries.clone();
        m
    }
}

/// What to do with a datagram from a client.
pub(crate) enum Accept {
    /// No answer (too short, or a response).
    Drop,
    /// Answer at once with these bytes (FORMERR, or SERVFAIL).
    Reply(Vec<u8>),
    /// Forward it.
    Forward(Box<Request>),
}

/// Sorts a message from a client.
pub(crate) fn accept(buf: &[u8]) -> Accept {
    if buf.len() < HEADER_LEN {
        return Accept::Drop;
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(&buf[..HEADER_LEN])) else {
        return Accept::Drop;
    };
    if header.metadata.message_type == MessageType::Response {
        return Accept::Drop;
    }
    let msg = match Message::from_vec(buf) {
        Ok(msg) if msg.metadata.message_type == MessageType::Query => msg,
        Ok(_) => return Accept::Drop,
        Err(_) => {
            let h = header.metadata;
            let mut m = Message::error_msg(h.id, h.op_code, ResponseCode::FormErr);
            m.metadata.recursion_desired = h.recursion_desired;
            m.metadata.checking_disabled = h.checking_disabled;
            return match m.to_vec() {
                Ok(bytes) => Accept::Reply(bytes),
                Err(_) => Accept::Drop,
            };
        }
    };
    let udp_limit = msg
        .edns
        .as_ref()
        .map_or(UDP_CLASSIC, |e| e.max_payload())
        .clamp(UDP_CLASSIC, UDP_MAX);
    let mut up = msg.clone();
    // Resolvers answer only what they may recurse for.
    up.metadata.recursion_desired = true;
    // An id the client did not choose: a spoofer must guess it (RFC 5452).
    let upstream_id = rand::random();
    up.metadata.id = upstream_id;
    let mut req = Request {
        upstream_id,
        id: msg.metadata.id,
        msg,
        upstream: Vec::new(),
        udp_limit,
    };
    match up.to_vec() {
        Ok(bytes) => {
            req.upstream = bytes;
            Accept::Forward(Box::new(req))
        }
        Err(_) => match req.failure(ResponseCode::FormErr).to_vec() {
            Ok(bytes) => Accept::Reply(bytes),
            Err(_) => Accept::Drop,
        },
    }
}

/// The bytes of `answer` for a client that takes at most `limit` bytes: the whole
/// message when it fits, else its header and question with TC set.
pub(crate) fn encode_answer(answer: &Message, limit: usize) -> Option<Vec<u8>> {
    match answer.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(bytes),
        Ok(_) => {
            let cut = answer.truncate();
            match cut.to_vec() {
                Ok(bytes) if bytes.len() <= limit => Some(bytes),
                // Even the question does not fit: the header alone.
                _ => {
                    let mut bare = Message::new(
                        answer.metadata.id,
                        MessageType::Response,
                        answer.metadata.op_code,
                    );
                    bare.metadata = answer.metadata;
                    bare.metadata.truncation = true;
                    bare.to_vec().ok()
                }
            }
        }
        Err(_) => None,
    }
}

/// The message path without sockets, for the fuzz target: a client's message
/// `client` and, when forwarded, the resolver's datagram `reply`, to the bytes the
/// client gets over UDP and over TCP. Panics if an answer is not a message with
/// the client's id that fits where it goes.
pub(crate) fn message_path(client: &[u8], reply: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let req = match accept(client) {
        Accept::Drop => return None,
        Accept::Reply(bytes) => return Some((bytes.clone(), bytes)),
        Accept::Forward(req) => req,
    };
    // The fuzzer cannot know the random id: the reply gets it.
    let mut reply = reply.to_vec();
    if let Some(id) = reply.get_mut(..2) {
        id.copy_from_slice(&req.upstream_id.to_be_bytes());
    }
    let answer = match check_reply(&reply, &req) {
        Reply::Ours(mut m) => {
            m.metadata.id = req.id;
            m
        }
        Reply::Broken | Reply::NotOurs => req.failure(ResponseCode::ServFail),
    };
    let udp = encode_answer(&answer, usize::from(req.udp_limit))?;
    assert!(udp.len() <= usize::from(req.udp_limit).max(HEADER_LEN));
    assert_eq!(udp[..2], req.id.to_be_bytes());
    let tcp = encode_answer(&answer, usize::from(u16::MAX))?;
    assert_eq!(tcp[..2], req.id.to_be_bytes());
    Some((udp, tcp))
}

/// Reads client datagrams; answers each forwarded query from its own task, as
/// long as fewer than the bound are being answered.
async fn udp_loop(
    fwd: Arc<Forwarder>,
    sock: UdpSocket,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0; usize::from(UDP_MAX)];
    let mut dropped: u64 = 0;
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("DNS forwarder: UDP receive: {e}");
                    continue;
                }
            },
        };
        if from.port() == 0 || from.ip().is_unspecified() {
            continue;
        }
        match accept(&buf[..n]) {
            Accept::Drop => {}
            Accept::Reply(bytes) => {
                let _ = sock.try_send_to(&bytes, from);
            }
            Accept::Forward(req) => {
                let Ok(permit) = fwd.in_flight.clone().try_acquire_owned() else {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        tracing::warn!(
                            "DNS forwarder: {dropped} queries dropped so far, {} in flight",
                            fwd.cfg.max_in_flight
                        );
                    }
                    continue;
                };
                log_query(&req, from);
                tasks.spawn(answer_udp(
                    fwd.clone(),
                    sock.clone(),
                    req,
                    from,
                    permit,
                    shutdown.clone(),
                ));
            }
        }
    }
}

fn log_query(req: &Request, from: SocketAddr) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        for q in &req.msg.queries {
            tracing::debug!(
                "DNS query {} from {from}: {} {} {}",
                req.id,
                q.name(),
                q.query_type(),
                q.query_class()
            );
        }
    }
}

async fn answer_udp(
    fwd: Arc<Forwarder>,
    sock: Arc<UdpSocket>,
    req: Box<Request>,
    to: SocketAddr,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let answer = tokio::select! {
        _ = shutdown.cancelled() => return,
        a = fwd.forward(&req, usize::from(req.udp_limit)) => a,
    };
    drop(permit);
    if let Some(bytes) = encode_answer(&answer, usize::from(req.udp_limit)) {
        if let Err(e) = sock.send_to(&bytes, to).await {
            tracing::debug!("DNS answer {} to {to}: {e}", req.id);
        }
    }
}

/// Accepts TCP clients, up to a bound of open connections.
async fn tcp_loop(
    fwd: Arc<Forwarder>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let connections = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    loop {
        let (stream, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("DNS forwarder: TCP accept: {e}");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let fwd = fwd.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_tcp(fwd, stream, from) => {}
            }
            drop(permit);
        });
    }
}

/// Answers the queries of one TCP client in turn (RFC 7766 framing) until it
/// closes, stays silent too long or sends what gets no answer.
async fn serve_tcp(fwd: Arc<Forwarder>, mut stream: TcpStream, from: SocketAddr) {
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let bytes = match accept(&buf) {
            Accept::Drop => return,
            Accept::Reply(bytes) => bytes,
            Accept::Forward(req) => {
                let Ok(permit) = fwd.in_flight.clone().try_acquire_owned() else {
                    return;
                };
                log_query(&req, from);
                let answer = fwd.forward(&req, usize::from(u16::MAX)).await;
                drop(permit);
                match encode_answer(&answer, usize::from(u16::MAX)) {
                    Some(bytes) => bytes,
                    None => return,
                }
            }
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x400, 0, 0, 0, 0, 0, 0, last)
    }

    #[test]
    fn lowest_metric_wins_and_ties_keep_the_earlier() {
        let c = [addr(1), addr(2), addr(3)];
        assert_eq!(choose(&c, &[None, None, None]), None);
        assert_eq!(
            choose(&c, &[Some(300), Some(200), Some(200)]),
            Some(addr(2))
        );
        assert_eq!(choose(&c, &[Some(100), None, Some(100)]), Some(addr(1)));
        assert_eq!(choose(&c, &[None, None, Some(0xfffe)]), Some(addr(3)));
    }

    #[test]
    fn short_and_response_datagrams_are_dropped() {
        assert!(matches!(accept(&[0; 11]), Accept::Drop));
        let mut response = [0u8; 12];
        response[2] = 0x80;
        assert!(matches!(accept(&response), Accept::Drop));
    }

    #[test]
    fn a_broken_question_gets_formerr_with_the_header_echoed() {
        // id 0x1234, RD and CD, one question that is cut off.
        let buf = [0x12, 0x34, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'];
        let Accept::Reply(bytes) = accept(&buf) else {
            panic!("expected FORMERR");
        };
        let m = Message::from_vec(&bytes).expect("parses");
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.metadata.recursion_desired && m.metadata.checking_disabled);
        assert!(m.queries.is_empty());
    }

    #[test]
    fn the_message_path_relays_the_resolver_s_answer() {
        let mut q = Message::new(9, MessageType::Query, hickory_proto::op::OpCode::Query);
        q.add_query(hickory_proto::op::Query::new());
        let q = q.to_vec().expect("encodes");
        let mut r = Message::response(9, hickory_proto::op::OpCode::Query);
        r.metadata.response_code = ResponseCode::Refused;
        r.add_query(hickory_proto::op::Query::new());
        let r = r.to_vec().expect("encodes");
        let (udp, tcp) = message_path(&q, &r).expect("an answer");
        let m = Message::from_vec(&udp).expect("parses");
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert_eq!(udp, tcp);
        let (udp, _) = message_path(&q, &[0, 9, 1]).expect("an answer");
        let m = Message::from_vec(&udp).expect("parses");
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    fn request(name: &str) -> Box<Request> {
        let mut q = Message::new(7, MessageType::Query, hickory_proto::op::OpCode::Query);
        let name = hickory_proto::rr::Name::from_ascii(name).expect("a name");
        q.add_query(hickory_proto::op::Query::query(
            name,
            hickory_proto::rr::RecordType::A,
        ));
        match accept(&q.to_vec().expect("encodes")) {
            Accept::Forward(req) => req,
            _ => panic!("expected a query to forward"),
        }
    }

    fn reply_to(req: &Request, id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::response(id, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let name = hickory_proto::rr::Name::from_ascii(name).expect("a name");
        let qtype = req.msg.queries[0].query_type();
        m.add_query(hickory_proto::op::Query::query(name, qtype));
        m.to_vec().expect("encodes")
    }

    #[test]
    fn the_resolver_is_asked_under_an_id_of_our_own() {
        let req = request("www.example.");
        let sent = Message::from_vec(&req.upstream).expect("parses");
        assert_eq!(sent.metadata.id, req.upstream_id);
        assert!(sent.metadata.recursion_desired);
        // Two queries with the same client id go out under different ids (a
        // 1 in 65,536 chance of a false failure per pair; eight pairs here).
        let ids: std::collections::HashSet<u16> = (0..16)
            .map(|_| request("www.example.").upstream_id)
            .collect();
        assert!(ids.len() > 1);
    }

    #[test]
    fn replies_with_another_id_or_question_are_ignored() {
        let req = request("www.example.");
        let up = req.upstream_id;
        let other = up.wrapping_add(1);
        assert!(matches!(
            check_reply(&reply_to(&req, other, "www.example."), &req),
            Reply::NotOurs
        ));
        assert!(matches!(
            check_reply(&reply_to(&req, up, "evil.example."), &req),
            Reply::NotOurs
        ));
        // Names compare without case (resolvers may echo 0x20-mixed case).
        assert!(matches!(
            check_reply(&reply_to(&req, up, "WWW.Example."), &req),
            Reply::Ours(_)
        ));
        let [hi, lo] = up.to_be_bytes();
        assert!(matches!(check_reply(&[hi, lo, 1], &req), Reply::Broken));
        assert!(matches!(check_reply(&[hi], &req), Reply::NotOurs));
    }
}
