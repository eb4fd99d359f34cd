//! The set-up of every RPC connection, before a single request frame is decoded: both ends
//! say which protocol they speak, and, when they share a token, prove it to each other
//! without sending it. Each end tells its build (crate version) only once the other has
//! proved the token (or when neither has one), so that a stranger cannot learn which
//! release, with which known holes, listens here.
//!
//! ```text
//! client → server  hello:  "SPNR" proto:u16 0:u8 nonce_c[32] auth:u8
//! server → client  hello:  "SPNR" proto:u16 0:u8 nonce_s[32] status:u8 has_token:u8
//!                          then, with a token:  proof_s[32]
//!                          without one:         build_len:u8 build
//! client → server  with a token: proof_c[32] build_len:u8 build  (the server proved it)
//!                  without one:   build_len:u8 build
//! server → client  verdict:u8 [build_len:u8 build when it is OK] (when the server has a token)
//! ```
//!
//! `proof_s = HMAC-SHA256(token, "spinneret server" ‖ nonce_c ‖ nonce_s)` and
//! `proof_c = HMAC-SHA256(token, "spinneret client" ‖ nonce_s ‖ nonce_c)`: each side proves
//! it knows the token over the other's fresh nonce, so a recorded exchange cannot be replayed,
//! and proofs are compared in constant time. A client with a token refuses a server without
//! one (it could be anyone); a server with a token refuses a client without it. Every field
//! has a fixed or small bound, and the whole exchange has a deadline. The hello keeps the
//! layout of protocol 3 (whose hello carried the build), so that ends of either protocol
//! still tell each other which protocol they speak.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The RPC protocol this build speaks; ends that speak different ones refuse each other.
/// 2: workers report their requests in flight by task in `status`.
/// 3: a fetch can fail with `FetchError::Archive` (a WARC record not written).
/// 4: the build is told only after the token is proved; `load_spider` answers a typed
/// `LoadSpiderError`.
/// 5: a request may ask to be rendered in a browser; workers say whether they render in
/// `info` and `status`; fetch facts say whether a page was rendered.
/// 6: workers say how many pages they render at once (`info.render_tabs`, where 5 had a
/// flag).
pub const PROTOCOL_VERSION: u16 = 6;

/// The first bytes of a Spinneret connection.
const MAGIC: [u8; 4] = *b"SPNR";

/// Bytes of each side's nonce and of a proof.
const NONCE: usize = 32;

/// Longest build version sent.
const MAX_BUILD: usize = 64;

/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_BYTES: usize = 16;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Server statuses.
const OK: u8 = 0;
const VERSION_MISMATCH: u8 = 1;
const TOKEN_REQUIRED: u8 = 2;
const TOKEN_WRONG: u8 = 3;

/// A shared secret both ends of a connection must know.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The token is too short to be secret.
    #[error(
        "the token in {path} has {len} bytes; use at least {MIN_TOKEN_BYTES} (for example `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Its length.
        len: usize,
    },
    /// The file is far too long to be a token (or has no end).
    #[error("the token file {path} is over {MAX_TOKEN_FILE} bytes: a token is one line")]
    TooLong {
        /// The file.
        path: String,
    },
}

impl Token {
    /// Reads a token from `path` (surrounding whitespace is not part of it).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let read = |source| TokenError::Read {
            path: path.display().to_string(),
            source,
        };
        // A token is a line; a file far longer (or endless, like a device) is not one.
        let mut text = Vec::new();
        let file = std::fs::File::open(path).map_err(read)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_TOKEN_FILE), &mut text)
            .map_err(read)?;
        if text.len() as u64 >= MAX_TOKEN_FILE {
            return Err(TokenError::TooLong {
                path: path.display().to_string(),
            });
        }
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort {
                path: path.display().to_string(),
                len: trimmed.len(),
            });
        }
        Ok(Token(trimmed.to_vec()))
    }

    /// A token from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Token {
        Token(bytes.to_vec())
    }

    fn proof(&self, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }
}

/// What an end of a connection proves itself with; none by default (loopback only, or
/// `--insecure`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The shared token (`--token FILE`).
    pub token: Option<Token>,
    /// TLS to the servers (`--tls_ca`, and `--tls_cert/--tls_key` for mutual TLS).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// What one end of a connection speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The RPC protocol version.
    pub protocol: u16,
    /// The build (crate) version.
    pub build: String,
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.build.is_empty() {
            // Not told: the peer had not authenticated.
            write!(f, "protocol {}", self.protocol)
        } else {
            write!(f, "protocol {} (spinneret {})", self.protocol, self.build)
        }
    }
}

impl Versions {
    /// What this build speaks. Debug builds may claim another protocol version through
    /// `SPINNERET_TEST_PROTOCOL_VERSION`, so that tests can see a mismatch refused.
    pub fn ours() -> Versions {
        let mut protocol = PROTOCOL_VERSION;
        if cfg!(debug_assertions)
            && let Some(v) = std::env::var("SPINNERET_TEST_PROTOCOL_VERSION")
                .ok()
                .and_then(|v| v.parse().ok())
        {
            protocol = v;
        }
        Versions {
            protocol,
            build: crate::VERSION.to_owned(),
        }
    }
}

/// Why a connection's set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not finish the set-up in time.
    #[error("the connection set-up did not finish within {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("the connection failed during set-up: {0}")]
    Io(#[from] std::io::Error),
    /// The peer does not speak Spinneret's RPC.
    #[error("the peer does not speak Spinneret's RPC (an older build, or another program)")]
    NotSpinneret,
    /// The two ends speak different protocols.
    #[error("version mismatch: this end speaks {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// This end.
        ours: Versions,
        /// The peer.
        theirs: Versions,
    },
    /// The server needs a token this end does not have.
    #[error("the server requires a token (--token FILE, the same on every process of the crawl)")]
    TokenRequired,
    /// This end has a token and the peer does not.
    #[error("this end has a token but the peer has none: refusing an unauthenticated peer")]
    PeerHasNoToken,
    /// The peer's proof of the token was wrong.
    #[error("the peer's token does not match ours")]
    TokenWrong,
    /// The server answered with TLS where this client speaks plain TCP.
    #[error("the server speaks TLS and this engine does not: give the engine --tls_ca")]
    ServerSpeaksTls,
    /// The client began TLS where this server speaks plain TCP.
    #[error(
        "the client speaks TLS and this server does not: give the server --tls_cert/--tls_key, or drop the engine's --tls_ca"
    )]
    ClientSpeaksTls,
    /// TLS failed: no certificate, one signed by another CA, or a peer without TLS.
    #[error("TLS failed: {0}")]
    Tls(std::io::Error),
}

impl HandshakeError {
    /// Names a failure that TLS raised as such: with TLS 1.3 a missing or unknown client
    /// certificate surfaces on the first read after the TLS handshake, inside the set-up.
    pub fn from_tls(self) -> HandshakeError {
        match self {
            HandshakeError::Io(e)
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                HandshakeError::Tls(e)
            }
            other => other,
        }
    }

    /// The reason a refusal is counted under, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout(_) => "timeout",
            HandshakeError::Io(_) => "io",
            HandshakeError::NotSpinneret => "not_spinneret",
            HandshakeError::VersionMismatch { .. } => "version_mismatch",
            HandshakeError::TokenRequired | HandshakeError::PeerHasNoToken => "no_token",
            HandshakeError::TokenWrong => "wrong_token",
            HandshakeError::ServerSpeaksTls
            | HandshakeError::ClientSpeaksTls
            | HandshakeError::Tls(_) => "tls",
        }
    }
}

fn nonce() -> Result<[u8; NONCE], HandshakeError> {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n)
        .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))?;
    Ok(n)
}

/// A hello: the protocol and a nonce, with an empty build (told after authentication).
fn hello(protocol: u16, nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 2 + 1 + NONCE + 2);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&protocol.to_le_bytes());
    out.push(0);
    out.extend_from_slice(nonce);
    out
}

/// Appends `build_len:u8 build` to `out`.
fn push_build(out: &mut Vec<u8>, build: &str) {
    let build = &build.as_bytes()[..build.len().min(MAX_BUILD)];
    out.push(build.len() as u8);
    out.extend_from_slice(build);
}

/// Reads `build_len:u8 build`, as text safe to log.
async fn read_build<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, HandshakeError> {
    let len = usize::from(stream.read_u8().await?);
    if len > MAX_BUILD {
        return Err(HandshakeError::NotSpinneret);
    }
    let mut build = vec![0u8; len];
    stream.read_exact(&mut build).await?;
    Ok(printable(&build))
}

/// A build as told by a peer, with nothing but a version's characters.
fn printable(build: &[u8]) -> String {
    build
        .iter()
        .map(|&b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-' | b'_' => char::from(b),
            _ => '?',
        })
        .collect()
}

/// Reads a hello: the peer's protocol (and the build a protocol 3 peer tells in it) and its
/// nonce.
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Versions, [u8; NONCE]), HandshakeError> {
    let mut head = [0u8; 6];
    stream.read_exact(&mut head).await?;
    // A TLS record (a handshake or an alert, protocol major version 3) where the magic
    // belongs: the two ends disagree about TLS.
    if matches!(head[..2], [0x15 | 0x16, 0x03]) {
        return Err(HandshakeError::ServerSpeaksTls);
    }
    if head[..4] != MAGIC {
        return Err(HandshakeError::NotSpinneret);
    }
    let protocol = u16::from_le_bytes([head[4], head[5]]);
    let build = read_build(stream).await?;
    let mut nonce = [0u8; NONCE];
    stream.read_exact(&mut nonce).await?;
    Ok((Versions { protocol, build }, nonce))
}

/// The client's side of the set-up, within `timeout`.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: Option<&Token>,
    timeout: Duration,
) -> Result<Versions, HandshakeError> {
    tokio::time::timeout(timeout, client_steps(stream, token))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

async fn client_steps<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: Option<&Token>,
) -> Result<Versions, HandshakeError> {
    let ours = Versions::ours();
    let nonce_c = nonce()?;
    let mut out = hello(ours.protocol, &nonce_c);
    out.push(u8::from(token.is_some()));
    stream.write_all(&out).await?;
    stream.flush().await?;
    let (mut theirs, nonce_s) = read_hello(stream).await?;
    let status = stream.read_u8().await?;
    match status {
        OK => {}
        VERSION_MISMATCH => return Err(HandshakeError::VersionMismatch { ours, theirs }),
        TOKEN_REQUIRED => return Err(HandshakeError::TokenRequired),
        _ => return Err(HandshakeError::NotSpinneret),
    }
    if theirs.protocol != ours.protocol {
        return Err(HandshakeError::VersionMismatch { ours, theirs });
    }
    let server_has_token = stream.read_u8().await? == 1;
    let mut ours_told = Vec::with_capacity(NONCE + 1 + MAX_BUILD);
    match (token, server_has_token) {
        (None, false) => {
            theirs.build = read_build(stream).await?;
            push_build(&mut ours_told, &ours.build);
            stream.write_all(&ours_told).await?;
            stream.flush().await?;
            Ok(theirs)
        }
        (None, true) => Err(HandshakeError::TokenRequired),
        (Some(_), false) => Err(HandshakeError::PeerHasNoToken),
        (Some(token), true) => {
            let mut proof_s = [0u8; NONCE];
            stream.read_exact(&mut proof_s).await?;
            if token
                .proof(b"spinneret server", &nonce_c, &nonce_s)
                .verify_slice(&proof_s)
                .is_err()
            {
                // An empty proof (and no build), so that the server learns (and logs) why
                // at once.
                stream.write_all(&[0u8; NONCE + 1]).await?;
                stream.flush().await?;
                return Err(HandshakeError::TokenWrong);
            }
            // The server proved the token: it may learn this build.
            ours_told.extend_from_slice(
                &token
                    .proof(b"spinneret client", &nonce_s, &nonce_c)
                    .finalize()
                    .into_bytes(),
            );
            push_build(&mut ours_told, &ours.build);
            stream.write_all(&ours_told).await?;
            stream.flush().await?;
            match stream.read_u8().await? {
                OK => {
                    theirs.build = read_build(stream).await?;
                    Ok(theirs)
                }
                _ => Err(HandshakeError::TokenWrong),
            }
        }
    }
}

/// The server's side of the set-up, within `timeout`: returns the client's versions, or why
/// it was refused (the client has been told).
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: Option<&Token>,
    timeout: Duration,
) -> Result<Versions, HandshakeError> {
    tokio::time::timeout(timeout, server_steps(stream, token))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

async fn server_steps<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: Option<&Token>,
) -> Result<Versions, HandshakeError> {
    let ours = Versions::ours();
    let (mut theirs, nonce_c) = read_hello(stream).await.map_err(|e| match e {
        HandshakeError::ServerSpeaksTls => HandshakeError::ClientSpeaksTls,
        other => other,
    })?;
    let client_has_token = stream.read_u8().await? == 1;
    let nonce_s = nonce()?;
    let mut out = hello(ours.protocol, &nonce_s);
    let status = if theirs.protocol != ours.protocol {
        VERSION_MISMATCH
    } else if token.is_some() && !client_has_token {
        TOKEN_REQUIRED
    } else {
        OK
    };
    out.push(status);
    if status != OK {
        stream.write_all(&out).await?;
        stream.flush().await?;
        return Err(match status {
            VERSION_MISMATCH => HandshakeError::VersionMismatch { ours, theirs },
            _ => HandshakeError::TokenRequired,
        });
    }
    out.push(u8::from(token.is_some()));
    let Some(token) = token else {
        // Nothing to prove on either side: the builds are told at once.
        push_build(&mut out, &ours.build);
        stream.write_all(&out).await?;
        stream.flush().await?;
        theirs.build = read_build(stream).await?;
        return Ok(theirs);
    };
    out.extend_from_slice(
        &token
            .proof(b"spinneret server", &nonce_c, &nonce_s)
            .finalize()
            .into_bytes(),
    );
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut proof_c = [0u8; NONCE];
    stream.read_exact(&mut proof_c).await?;
    let told = read_build(stream).await?;
    let verified = token
        .proof(b"spinneret client", &nonce_s, &nonce_c)
        .verify_slice(&proof_c)
        .is_ok();
    if !verified {
        // Told why if it still listens; refused for its token either way.
        let _ = stream.write_u8(TOKEN_WRONG).await;
        let _ = stream.flush().await;
        return Err(HandshakeError::TokenWrong);
    }
    // The client proved the token: it may learn this build.
    let mut verdict = vec![OK];
    push_build(&mut verdict, &ours.build);
    theirs.build = told;
    stream.write_all(&verdict).await?;
    stream.flush().await?;
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    async fn pair(
        server_token: Option<Token>,
        client_token: Option<Token>,
    ) -> (
        Result<Versions, HandshakeError>,
        Result<Versions, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move { server(&mut a, server_token.as_ref(), T).await });
        let client = client(&mut b, client_token.as_ref(), T).await;
        // A client that refused the server hangs up, as a connection does when dropped.
        drop(b);
        (server.await.expect("server task"), client)
    }

    fn token(s: &str) -> Option<Token> {
        Some(Token::from_bytes(s.as_bytes()))
    }

    #[tokio::test]
    async fn ends_without_tokens_agree_on_versions() {
        let (s, c) = pair(None, None).await;
        assert_eq!(s.expect("server").protocol, PROTOCOL_VERSION);
        assert_eq!(c.expect("client").build, crate::VERSION);
    }

    #[tokio::test]
    async fn the_same_token_on_both_ends_is_accepted() {
        let (s, c) = pair(token("0123456789abcdef"), token("0123456789abcdef")).await;
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
    }

    #[tokio::test]
    async fn a_wrong_or_missing_token_is_refused_on_both_ends() {
        let (s, c) = pair(token("0123456789abcdef"), token("fedcba9876543210")).await;
        assert!(matches!(s, Err(HandshakeError::TokenWrong)), "{s:?}");
        assert!(matches!(c, Err(HandshakeError::TokenWrong)), "{c:?}");
        let (s, c) = pair(token("0123456789abcdef"), None).await;
        assert!(matches!(s, Err(HandshakeError::TokenRequired)), "{s:?}");
        assert!(matches!(c, Err(HandshakeError::TokenRequired)), "{c:?}");
        let (_, c) = pair(None, token("0123456789abcdef")).await;
        assert!(matches!(c, Err(HandshakeError::PeerHasNoToken)), "{c:?}");
    }

    #[tokio::test]
    async fn a_peer_that_is_not_spinneret_is_refused_without_waiting() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let refused = server(&mut a, None, T).await;
        assert!(
            matches!(refused, Err(HandshakeError::NotSpinneret)),
            "{refused:?}"
        );
        let (mut a, _b) = tokio::io::duplex(1024);
        let silent = server(&mut a, None, Duration::from_millis(50)).await;
        assert!(
            matches!(silent, Err(HandshakeError::Timeout(_))),
            "{silent:?}"
        );
    }

    #[tokio::test]
    async fn the_build_is_told_only_to_a_peer_that_proved_the_token() {
        let (s, c) = pair(token("0123456789abcdef"), token("0123456789abcdef")).await;
        assert_eq!(s.expect("server").build, crate::VERSION);
        assert_eq!(c.expect("client").build, crate::VERSION);
        // A stranger without the token, or with a wrong one, hears no build.
        for stranger_has_token in [false, true] {
            let (mut a, mut b) = tokio::io::duplex(4096);
            let serving =
                tokio::spawn(
                    async move { server(&mut a, token("0123456789abcdef").as_ref(), T).await },
                );
            let mut out = hello(PROTOCOL_VERSION, &[7u8; NONCE]);
            out.push(u8::from(stranger_has_token));
            b.write_all(&out).await.expect("write");
            let mut heard = Vec::new();
            if stranger_has_token {
                // The server's hello, status, token flag and proof; then a wrong proof, with
                // the build, as a client of another token sends.
                let mut hello_s = vec![0u8; 4 + 2 + 1 + NONCE + 2 + NONCE];
                b.read_exact(&mut hello_s).await.expect("hello");
                heard.extend_from_slice(&hello_s);
                let mut proof = vec![0u8; NONCE];
                push_build(&mut proof, crate::VERSION);
                b.write_all(&proof).await.expect("write");
            }
            let refused = serving.await.expect("server task");
            assert!(refused.is_err(), "{refused:?}");
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).await.expect("read");
            heard.extend_from_slice(&rest);
            let build = crate::VERSION.as_bytes();
            assert!(
                !heard.windows(build.len()).any(|w| w == build),
                "a stranger heard the build {:?}: {heard:?}",
                crate::VERSION
            );
        }
    }

    #[test]
    fn a_version_mismatch_names_both_versions() {
        let e = HandshakeError::VersionMismatch {
            ours: Versions {
                protocol: 1,
                build: "0.1.0".into(),
            },
            theirs: Versions {
                protocol: 2,
                build: "0.2.0".into(),
            },
        };
        let text = e.to_string();
        assert!(
            text.contains("protocol 1 (spinneret 0.1.0)")
                && text.contains("protocol 2 (spinneret 0.2.0)"),
            "{text}"
        );
    }
}
