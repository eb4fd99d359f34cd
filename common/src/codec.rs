//! The bincode codec of every RPC connection, with the one repair a server needs before tarpc
//! sees a request: a deadline too far ahead is cut to [`MAX_DEADLINE`].
//!
//! tarpc decodes a request's deadline as `Instant::now() + duration`, which panics when a peer
//! sends a duration of centuries. The server side of the codec rewrites such a deadline in the
//! frame before decoding it, so no peer can make that addition overflow.

use bincode::Options;
use serde::{Deserialize, Serialize};
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::bytes::{Bytes, BytesMut};

/// The furthest ahead a peer's deadline may be; a request asking for more gets this.
pub const MAX_DEADLINE: Duration = Duration::from_secs(86_400);

/// bincode's varint marker for a `u64` that follows in eight bytes.
const VARINT_U64: u8 = 253;
/// bincode's varint marker for a `u32` that follows in four bytes.
const VARINT_U32: u8 = 252;
/// bincode's varint marker for a `u16` that follows in two bytes.
const VARINT_U16: u8 = 251;

/// Which end of a connection a codec serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that sends requests.
    Client,
    /// The end that answers them: far deadlines are cut before decoding.
    Server,
}

/// Encodes `Out` and decodes `In` with bincode's default options (varint integers, as tarpc's
/// own bincode transport uses).
#[derive(Debug)]
pub struct WireCodec<In, Out> {
    side: Side,
    types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> WireCodec<In, Out> {
    /// A codec for the `side` end of a connection.
    pub fn new(side: Side) -> Self {
        WireCodec {
            side,
            types: PhantomData,
        }
    }
}

/// The size of `value` as the codec encodes it, in bytes.
pub fn encoded_len<T: Serialize>(value: &T) -> u64 {
    options().serialized_size(value).unwrap_or(u64::MAX)
}

fn options() -> impl Options + Copy {
    bincode::DefaultOptions::new()
}

impl<In, Out: Serialize> Serializer<Out> for WireCodec<In, Out> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &Out) -> Result<Bytes, io::Error> {
        options()
            .serialize(item)
            .map(Bytes::from)
            .map_err(io::Error::other)
    }
}

impl<In: for<'de> Deserialize<'de>, Out> Deserializer<In> for WireCodec<In, Out> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<In, io::Error> {
        let clamped = match self.side {
            Side::Server => clamp_deadline(src),
            Side::Client => None,
        };
        options()
            .deserialize(clamped.as_deref().unwrap_or(src))
            .map_err(io::Error::other)
    }
}

/// When `frame` is a tarpc request (variant 0) whose deadline, the varint right after the
/// variant, is further ahead than [`MAX_DEADLINE`], returns the frame with that deadline cut.
fn clamp_deadline(frame: &[u8]) -> Option<Vec<u8>> {
    if frame.first() != Some(&0) {
        return None;
    }
    let rest = &frame[1..];
    let (secs, len) = match *rest.first()? {
        b if b < VARINT_U16 => (u64::from(b), 1),
        VARINT_U16 => (
            u64::from(u16::from_le_bytes(rest.get(1..3)?.try_into().ok()?)),
            3,
        ),
        VARINT_U32 => (
            u64::from(u32::from_le_bytes(rest.get(1..5)?.try_into().ok()?)),
            5,
        ),
        VARINT_U64 => (u64::from_le_bytes(rest.get(1..9)?.try_into().ok()?), 9),
        // A wider integer is no valid u64: let decoding refuse it.
        _ => return None,
    };
    if secs <= MAX_DEADLINE.as_secs() {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len());
    out.push(0);
    out.push(VARINT_U32);
    out.extend_from_slice(&(MAX_DEADLINE.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&rest[len..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(deadline: Duration) -> Vec<u8> {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + deadline;
        options()
            .serialize(&tarpc::ClientMessage::Request(tarpc::Request {
                context: ctx,
                id: 1,
                message: "hello".to_owned(),
            }))
            .expect("serialize")
    }

    #[test]
    fn ordinary_deadlines_are_left_alone() {
        for secs in [0, 10, 300, 70_000, 86_400] {
            assert_eq!(clamp_deadline(&request(Duration::from_secs(secs))), None);
        }
    }

    #[test]
    fn far_deadlines_are_cut_and_the_request_still_decodes() {
        for far in [86_500, 1 << 20, 1 << 40] {
            let frame = request(Duration::from_secs(far));
            let cut = clamp_deadline(&frame).expect("cut");
            let msg: tarpc::ClientMessage<String> = options().deserialize(&cut).expect("decode");
            let tarpc::ClientMessage::Request(req) = msg else {
                panic!("not a request");
            };
            assert_eq!(req.message, "hello");
            let left = req.context.deadline - std::time::Instant::now();
            // The nanoseconds stay as sent: under a second more.
            assert!(left < MAX_DEADLINE + Duration::from_secs(1));
            assert!(left > MAX_DEADLINE - Duration::from_secs(5));
        }
    }
}
