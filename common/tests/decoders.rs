//! Decoders under attack: random and mutated bytes fed to the RPC frame decoder of both
//! services and to URL canonicalisation never panic, and each case ends quickly.

use common::codec::{Side, WireCodec};
use proptest::prelude::*;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tarpc::tokio_serde::Deserializer;
use tarpc::tokio_util::bytes::BytesMut;

/// Longest one case may take: a decoder that hangs or explodes fails here.
const CASE: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

type CrawlFrame = tarpc::ClientMessage<common::service::CrawlServiceRequest>;
type SaveFrame = tarpc::ClientMessage<common::service::ItemSaverServiceRequest>;

/// Decodes `bytes` as a server decodes a request frame of `T`; only whether it panics matters.
fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> bool {
    let mut codec = WireCodec::<T, ()>::new(Side::Server);
    let started = Instant::now();
    let ok = Pin::new(&mut codec)
        .deserialize(&BytesMut::from(bytes))
        .is_ok();
    assert!(
        started.elapsed() < CASE,
        "decoding took {:?}",
        started.elapsed()
    );
    ok
}

/// A valid crawl request frame, to mutate.
fn crawl_frame() -> Vec<u8> {
    let request = common::Request {
        url: "http://a.test/x?y=1".into(),
        parser: "links".into(),
        depth: 2,
        task: "t".into(),
        meta: [("k".to_string(), "v".to_string())].into(),
        spider: Some(7),
    };
    let message: CrawlFrame = tarpc::ClientMessage::Request(tarpc::Request {
        context: common::transport::deadline(Duration::from_secs(5)),
        id: 1,
        message: common::service::CrawlServiceRequest::Crawl {
            request,
            render: None,
        },
    });
    use bincode::Options;
    // The codec's own encoding: bincode's default options (varint integers).
    bincode::DefaultOptions::new()
        .serialize(&message)
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_crash_the_frame_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode::<CrawlFrame>(&bytes);
        decode::<SaveFrame>(&bytes);
    }

    #[test]
    fn mutated_frames_never_crash_the_frame_decoders(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = crawl_frame();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        decode::<CrawlFrame>(&frame);
        decode::<SaveFrame>(&frame);
        let end = cut.index(frame.len() + 1);
        decode::<CrawlFrame>(&frame[..end]);
    }

    #[test]
    fn canonicalisation_never_crashes_and_is_stable(text in ".{0,512}", base in "(https?://[a-z0-9.:-]{1,40}/[ -~]{0,40})?") {
        let started = Instant::now();
        let base = url::Url::parse(&base).ok();
        if let Ok(url) = common::canonicalize(&text, base.as_ref()) {
            // A canonical URL canonicalises to itself.
            let again = common::canonicalize(url.as_str(), None).map(|u| u.to_string());
            prop_assert_eq!(again.as_deref().ok(), Some(url.as_str()));
        }
        prop_assert!(started.elapsed() < CASE);
    }
}

#[test]
fn the_valid_frame_decodes() {
    assert!(
        decode::<CrawlFrame>(&crawl_frame()),
        "the unmutated frame is valid"
    );
}
