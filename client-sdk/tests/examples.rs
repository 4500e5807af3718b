//! The examples run against a real relay: their code is compiled into this
//! test and called with the test relay's address.
#![allow(clippy::unwrap_used)]

mod common;

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/quickstart.rs"]
mod quickstart;

use common::TestRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_example_delivers_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    // The example's default transport, WebTransport, on the relay's port.
    let url = format!("https://{}/wt", relay.addr);
    let m = quickstart::run(&url, relay.cert, &tmp.path().join("clients"))
        .await
        .unwrap();
    assert_eq!(m.text, "hello bob, from the quickstart");
    assert!(m.sender.user.0.starts_with("alice-"));
    relay.stop().await;
}
