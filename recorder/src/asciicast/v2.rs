//! Export to asciicast v2 (absolute times) for players that read only v2,
//! such as Debian's asciinema 2.2.

use serde_json::json;

use super::{Cast, Event, FILE_OP_MARKER_PREFIX};

/// Converts a parsed v3 recording to v2 bytes.
///
/// v2 has `o`, `i`, `m` and `r` events with times since the start. The exit
/// status (`x`, new in v3) becomes a marker `exit N`, file operations become
/// their marker again, and unknown codes are dropped. Gatehouse metadata stays
/// in the header under `gatehouse`, which v2 players ignore.
pub fn to_v2(cast: &Cast) -> Vec<u8> {
    let mut out = Vec::new();
    let mut header = json!({
        "version": 2,
        "width": cast.header.term.cols,
        "height": cast.header.term.rows,
    });
    if let Some(object) = header.as_object_mut() {
        if let Some(ts) = cast.header.timestamp {
            object.insert("timestamp".into(), ts.into());
        }
        object.insert(
            "duration".into(),
            json!(cast.duration_us() as f64 / 1_000_000.0),
        );
        if let Some(command) = &cast.header.command {
            object.insert("command".into(), command.clone().into());
        }
        if let Some(title) = &cast.header.title {
            object.insert("title".into(), title.clone().into());
        }
        if let Some(term) = &cast.header.term.term_type {
            object.insert("env".into(), json!({ "TERM": term }));
        }
        if let Some(gatehouse) = &cast.header.gatehouse {
            object.insert(
                "gatehouse".into(),
                serde_json::to_value(gatehouse).unwrap_or_default(),
            );
        }
    }
    let _ = serde_json::to_writer(&mut out, &header);
    out.push(b'\n');
    for e in &cast.events {
        let (code, data) = match &e.event {
            Event::Output(t) => ("o", t.clone()),
            Event::Input(t) => ("i", t.clone()),
            Event::Resize { cols, rows } => ("r", format!("{cols}x{rows}")),
            Event::Marker(label) => ("m", label.clone()),
            Event::FileOp(op) => (
                "m",
                format!(
                    "{FILE_OP_MARKER_PREFIX}{}",
                    serde_json::to_string(op).unwrap_or_default()
                ),
            ),
            Event::Exit(code) => ("m", format!("exit {code}")),
            Event::Other { .. } => continue,
        };
        out.push(b'[');
        super::format_interval(e.time_us, &mut out);
        out.extend_from_slice(b", ");
        let _ = serde_json::to_writer(&mut out, code);
        out.extend_from_slice(b", ");
        let _ = serde_json::to_writer(&mut out, &data);
        out.extend_from_slice(b"]\n");
    }
    out
}
