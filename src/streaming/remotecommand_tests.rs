use super::*;

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

#[test]
fn the_clients_first_supported_protocol_wins() {
    assert_eq!(negotiate(["v4.channel.k8s.io"]), Some(Protocol::V4));
    let offered = ["v2.channel.k8s.io", "v4.channel.k8s.io"];
    assert_eq!(negotiate(offered), Some(Protocol::V2), "the client's order");
    assert_eq!(
        negotiate(["v5.channel.k8s.io, channel.k8s.io"]),
        Some(Protocol::V1),
        "comma-joined values, unknown ones skipped"
    );
    assert_eq!(negotiate(["portforward.k8s.io"]), None);
    assert_eq!(negotiate([]), None);
    assert!(Protocol::V3.resizes() && !Protocol::V2.resizes());
}

#[test]
fn stream_types_are_the_five_kubelet_names() {
    assert_eq!(StreamType::parse("stdin"), Some(StreamType::Stdin));
    assert_eq!(StreamType::parse("resize"), Some(StreamType::Resize));
    assert_eq!(StreamType::parse("error"), Some(StreamType::Error));
    assert_eq!(StreamType::parse("data"), None);
    assert_eq!(StreamType::parse("STDIN"), None);
}

#[test]
fn v4_reports_success_and_exit_codes_as_status_json() {
    let ok = json(&exit_status(0));
    assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
    let failed = json(&exit_status(3));
    assert_eq!(failed["status"], "Failure");
    assert_eq!(failed["reason"], "NonZeroExitCode");
    let causes = &failed["details"]["causes"];
    assert_eq!(
        causes,
        &serde_json::json!([{"reason": "ExitCode", "message": "3"}])
    );
    assert_eq!(Protocol::V4.exit_message(0), exit_status(0));
    let internal = json(&Protocol::V4.failure_message("no such file"));
    assert_eq!(internal["reason"], "InternalError");
    assert_eq!(internal["code"], 500);
    assert!(
        internal["message"]
            .as_str()
            .unwrap()
            .contains("no such file")
    );
}

#[test]
fn older_protocols_send_text_on_failure_and_nothing_on_success() {
    assert!(Protocol::V3.exit_message(0).is_empty());
    let text = String::from_utf8(Protocol::V2.exit_message(7)).unwrap();
    assert!(
        text.contains("non-zero exit code") && text.ends_with('7'),
        "{text}"
    );
    assert_eq!(Protocol::V1.failure_message("boom"), b"boom");
}

#[test]
fn resize_events_are_read_across_arbitrary_cuts() {
    let mut d = ResizeDecoder::default();
    let all = br#"{"Width":80,"Height":24}{"Width":100,"Height":40}
{"Width":1,"Height":2}"#;
    let mut got = Vec::new();
    for chunk in all.chunks(7) {
        got.extend(d.feed(chunk).unwrap());
    }
    let want = [(80, 24), (100, 40), (1, 2)];
    let want: Vec<Size> = want.map(|(width, height)| Size { width, height }).into();
    assert_eq!(got, want);
}

#[test]
fn bad_resize_events_are_errors_not_panics() {
    let mut d = ResizeDecoder::default();
    assert!(matches!(
        d.feed(b"{\"Width\":-1,\"Height\":2}"),
        Err(ResizeError::Json(_))
    ));
    let mut d = ResizeDecoder::default();
    assert!(matches!(d.feed(b"\"wide\""), Err(ResizeError::Json(_))));
    let mut d = ResizeDecoder::default();
    let mut long = b"{\"Width\":".to_vec();
    long.extend(std::iter::repeat_n(b' ', 5000));
    assert_eq!(d.feed(&long), Err(ResizeError::TooLong));
}

#[test]
fn websocket_channels_are_known_by_their_byte() {
    assert_eq!(Channel::from_byte(0), Some(Channel::Stdin));
    assert_eq!(Channel::from_byte(4), Some(Channel::Resize));
    assert_eq!(Channel::from_byte(255), Some(Channel::Close));
    assert_eq!(Channel::from_byte(9), None);
}
