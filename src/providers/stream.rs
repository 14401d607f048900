//! Streamed replies: the upstream body read as it arrives, cut into frames
//! (server-sent events for OpenAI and Anthropic, NDJSON lines for Ollama),
//! and each frame decoded by the provider's own [`Decoder`] into
//! [`StreamEvent`]s.
//!
//! Nothing is buffered beyond the frame being read. The whole stream is
//! bounded by [`MAX_REPLY_BYTES`], and every gap between two reads by the
//! provider timeout, so a stalled or endless upstream ends as a categorized
//! [`ProviderError`] rather than holding a connection forever. Dropping the
//! stream drops the upstream response, which closes its connection: a client
//! that goes away stops the upstream generation too.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use super::error::ProviderError;

/// The largest reply body read. A bigger one is refused rather than buffered,
/// so that a misbehaving upstream cannot exhaust the gateway's memory.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Token counts of one exchange, as the provider reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the input.
    pub prompt_tokens: u64,
    /// Tokens of the reply.
    pub completion_tokens: u64,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of the reply text (never empty).
    Text(String),
    /// A tool call begins: its place among the reply's calls (0, 1, …, in
    /// order), its id and the function's name.
    ToolCallStart {
        /// The call's place among the reply's calls.
        index: usize,
        /// The call's id.
        id: String,
        /// The function called.
        name: String,
    },
    /// The next piece of the arguments (a JSON text) of the call at
    /// `index`; pieces may end anywhere, inside a string or an escape.
    ToolCallArguments {
        /// The call's place among the reply's calls.
        index: usize,
        /// The piece (never empty).
        arguments: String,
    },
    /// Why the reply ended, in OpenAI's words (`stop`, `length`, …).
    Finish(String),
    /// The token counts, when the provider reports them.
    Usage(Usage),
}

/// A streamed reply: events as they arrive, then the end of the stream; an
/// error ends it early.
pub type ReplyStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A provider's reading of its own stream format, one frame at a time.
pub trait Decoder: Send + 'static {
    /// Reads one frame: an SSE event's name and data, or an NDJSON line (no
    /// name). Pushes what it holds onto `out`; returns `true` when the frame
    /// ends the reply.
    fn frame(
        &mut self,
        event: Option<&str>,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError>;

    /// The upstream closed its body before a frame ended the reply: whether
    /// that is still a whole reply (`Ok`) or one cut short.
    fn at_eof(&self) -> Result<(), ProviderError> {
        Err(ProviderError::bad_response(
            "stream ended before the reply was complete",
        ))
    }
}

/// The body of a 2xx streamed answer, chunk by chunk: each read bounded by
/// `idle`, the whole by [`MAX_REPLY_BYTES`].
fn guarded_body(
    response: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    let body = Box::pin(response.bytes_stream());
    stream::unfold(Some((body, 0usize)), move |state| async move {
        let (mut body, total) = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((Err(ProviderError::stalled(idle)), None)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(ProviderError::from_body(&e, idle)), None)),
            Ok(Some(Ok(chunk))) => {
                let total = total + chunk.len();
                if total > MAX_REPLY_BYTES {
                    Some((Err(ProviderError::too_large()), None))
                } else {
                    Some((Ok(chunk), Some((body, total))))
                }
            }
        }
    })
}

/// A frame: the SSE event name (`None` for NDJSON) and the payload.
type Frame = (Option<String>, String);

/// The frames of a streamed reply, in order.
pub(crate) type Frames = Pin<Box<dyn Stream<Item = Result<Frame, ProviderError>> + Send>>;

/// The frames of a server-sent event stream.
pub(crate) fn sse_frames(response: reqwest::Response, idle: Duration) -> Frames {
    let frames = guarded_body(response, idle)
        .eventsource()
        .map(|event| match event {
            Ok(event) => Ok((Some(event.event), event.data)),
            Err(EventStreamError::Transport(e)) => Err(e),
            Err(EventStreamError::Utf8(_) | EventStreamError::Parser(_)) => Err(
                ProviderError::bad_response("stream is not valid server-sent events"),
            ),
        });
    Box::pin(frames)
}

/// The non-empty lines of an NDJSON stream.
pub(crate) fn ndjson_frames(response: reqwest::Response, idle: Duration) -> Frames {
    // The reader speaks io::Error; the provider error rides inside it and is
    // taken back out below.
    let reader = StreamReader::new(guarded_body(response, idle).map_err(std::io::Error::other));
    let lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_REPLY_BYTES))
        .map(|line| match line {
            Ok(line) => Ok((None, line)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Err(ProviderError::too_large()),
            Err(LinesCodecError::Io(e)) => Err(e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ProviderError>())
                .cloned()
                .unwrap_or_else(|| ProviderError::bad_response("stream is not valid UTF-8 lines"))),
        })
        .try_filter(|(_, line)| std::future::ready(!line.trim().is_empty()));
    Box::pin(lines)
}

/// Runs `decoder` over `frames`: the events in order, then the end once a
/// frame completes the reply (anything after it is not read), or the error
/// that cut it short.
pub(crate) fn decode<D: Decoder>(frames: Frames, decoder: D) -> ReplyStream {
    struct State<D> {
        frames: Frames,
        decoder: D,
        done: bool,
    }
    let state = State {
        frames,
        decoder,
        done: false,
    };
    let batches = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let mut out = Vec::new();
        let result = match state.frames.next().await {
            None => {
                state.done = true;
                state.decoder.at_eof()
            }
            Some(Err(e)) => Err(e),
            Some(Ok((event, data))) => state
                .decoder
                .frame(event.as_deref(), &data, &mut out)
                .map(|complete| state.done = complete),
        };
        let batch: Vec<Result<StreamEvent, ProviderError>> = match result {
            Ok(()) => out.into_iter().map(Ok).collect(),
            Err(e) => {
                state.done = true;
                out.into_iter().map(Ok).chain([Err(e)]).collect()
            }
        };
        Some((stream::iter(batch), state))
    });
    Box::pin(batches.flatten())
}

/// A stream of the events of a reply that arrived whole: what a provider
/// without a streaming format of its own would send.
pub fn whole(reply: super::Reply) -> ReplyStream {
    let mut events = Vec::new();
    if !reply.content.is_empty() {
        events.push(Ok(StreamEvent::Text(reply.content)));
    }
    for (index, call) in reply.tool_calls.into_iter().enumerate() {
        events.push(Ok(StreamEvent::ToolCallStart {
            index,
            id: call.id,
            name: call.name,
        }));
        if !call.arguments.is_empty() {
            events.push(Ok(StreamEvent::ToolCallArguments {
                index,
                arguments: call.arguments,
            }));
        }
    }
    events.push(Ok(StreamEvent::Finish(
        reply.finish_reason.unwrap_or_else(|| "stop".to_owned()),
    )));
    if let Some(usage) = reply.usage {
        events.push(Ok(StreamEvent::Usage(usage)));
    }
    Box::pin(stream::iter(events))
}

/// The JSON of a frame's payload, or the `bad_response` that says it is not.
pub(crate) fn frame_json(data: &str) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(data)
        .map_err(|_| ProviderError::bad_response("stream holds an event that is not JSON"))
}

/// A `u64` at `pointer` in `value`.
pub(crate) fn count(value: &serde_json::Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer).and_then(serde_json::Value::as_u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes `frames` (already cut) with `decoder` and collects the result.
    pub(crate) async fn run<D: Decoder>(
        decoder: D,
        frames: Vec<(Option<&str>, &str)>,
    ) -> Vec<Result<StreamEvent, ProviderError>> {
        let frames: Vec<Result<Frame, ProviderError>> = frames
            .into_iter()
            .map(|(e, d)| Ok((e.map(str::to_owned), d.to_owned())))
            .collect();
        decode(Box::pin(stream::iter(frames)), decoder)
            .collect()
            .await
    }

    /// Every text piece of `events`, concatenated.
    pub(crate) fn text(events: &[Result<StreamEvent, ProviderError>]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Ends on the first frame that is not `"more"`; `"bad"` is an error.
    struct Toy;

    impl Decoder for Toy {
        fn frame(
            &mut self,
            _: Option<&str>,
            data: &str,
            out: &mut Vec<StreamEvent>,
        ) -> Result<bool, ProviderError> {
            match data {
                "bad" => Err(ProviderError::bad_response("is bad")),
                "more" => {
                    out.push(StreamEvent::Text("x".into()));
                    Ok(false)
                }
                _ => Ok(true),
            }
        }
    }

    #[tokio::test]
    async fn decoding_stops_at_the_frame_that_completes_the_reply() {
        let events = run(
            Toy,
            vec![
                (None, "more"),
                (None, "more"),
                (None, "end"),
                (None, "more"),
            ],
        )
        .await;
        assert_eq!(events.len(), 2);
        assert_eq!(text(&events), "xx");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_what_came_before() {
        let events = run(Toy, vec![(None, "more"), (None, "bad"), (None, "more")]).await;
        assert_eq!(events.len(), 2);
        assert!(events[0].is_ok());
        assert_eq!(
            events[1].as_ref().unwrap_err().to_string(),
            "bad_response: provider's reply is bad"
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_cut_short() {
        let events = run(Toy, vec![(None, "more")]).await;
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].as_ref().unwrap_err().to_string(),
            "bad_response: provider's reply stream ended before the reply was complete"
        );
    }

    #[tokio::test]
    async fn a_whole_reply_streams_as_text_finish_and_usage() {
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let events: Vec<_> = whole(super::super::Reply {
            content: "hi".into(),
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: Some(usage),
        })
        .collect()
        .await;
        assert_eq!(
            events.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            vec![
                StreamEvent::Text("hi".into()),
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(usage)
            ]
        );
    }

    /// Every tool call of `events`: (index, id, name, the arguments joined).
    pub(crate) fn tool_calls(
        events: &[Result<StreamEvent, ProviderError>],
    ) -> Vec<(usize, String, String, String)> {
        let mut calls: Vec<(usize, String, String, String)> = Vec::new();
        for event in events {
            match event {
                Ok(StreamEvent::ToolCallStart { index, id, name }) => {
                    calls.push((*index, id.clone(), name.clone(), String::new()));
                }
                Ok(StreamEvent::ToolCallArguments { index, arguments }) => {
                    let call = calls
                        .iter_mut()
                        .find(|c| c.0 == *index)
                        .expect("arguments of a started call");
                    call.3.push_str(arguments);
                }
                _ => {}
            }
        }
        calls
    }

    #[tokio::test]
    async fn a_whole_reply_streams_its_tool_calls() {
        let reply = super::super::Reply {
            content: String::new(),
            tool_calls: vec![crate::chat::ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into(),
            }],
            finish_reason: Some("tool_calls".into()),
            usage: None,
        };
        let events: Vec<_> = whole(reply).collect().await;
        assert_eq!(
            tool_calls(&events),
            [(0, "c1".to_owned(), "f".to_owned(), r#"{"a":1}"#.to_owned())]
        );
    }
}
