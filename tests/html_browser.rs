//! The html report in a real browser: headless Chromium (Debian's `chromium` package) loads
//! the page from a file, runs its script, and the tests check the DOM it ends with and a
//! screenshot of it. Without Chromium these tests are skipped with a message, except in CI
//! (`CI=true`), where a missing browser is a failure. `tests/browser/render.sh` does the same
//! by hand and keeps the files to look at.
//!
//! Checks that need no browser (nothing fetched from outside the page, hostile text escaped)
//! run everywhere.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

const SCENARIOS: &str = "samples/scenarios";

/// Where Debian installs Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser run that takes longer than this is stuck.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// The browser, or None (and a message) when it is not installed; in CI it must be.
fn chromium() -> Option<PathBuf> {
    let path = Path::new(CHROMIUM);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {CHROMIUM} is not installed (Debian package chromium)");
    }
    eprintln!("skipped: {CHROMIUM} is not installed (Debian package chromium)");
    None
}

/// rstscope run from the crate root; its stdout.
fn rstscope(args: &[&str]) -> Vec<u8> {
    let out = Command::cargo_bin("rstscope")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "rstscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The html report of `inputs`, written to a file in `dir`.
fn html_report(dir: &Path, inputs: &[&str]) -> PathBuf {
    let page = dir.join("report.html");
    let mut args = vec!["--format", "html", "-o", page.to_str().unwrap()];
    args.extend_from_slice(inputs);
    rstscope(&args);
    page
}

/// The json report of the same inputs: what the page must show.
fn json_report(inputs: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(inputs);
    serde_json::from_slice(&rstscope(&args)).unwrap()
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile, and returns
/// what it wrote on stdout. Bounded in time; the browser is killed if it hangs.
fn browse(browser: &Path, dir: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let stdout_path = dir.join("browser.out");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        // A file, not a pipe: the DOM is larger than a pipe's buffer and nobody reads it
        // while the browser runs.
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium {extra:?} {url}: {status}");
    std::fs::read_to_string(&stdout_path).unwrap()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

/// The opening tags in `dom` that start with `prefix` (e.g. `<tr class="conn`).
fn tags<'a>(dom: &'a str, prefix: &str) -> Vec<&'a str> {
    dom.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &dom[at..];
            &rest[..rest.find('>').map_or(rest.len(), |e| e + 1)]
        })
        .collect()
}

/// The value of attribute `name` in one opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    tag[at..].find('"').map(|end| &tag[at..at + end])
}

fn failing_classes(json: &Value) -> Vec<String> {
    let mut classes: Vec<String> = json["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap().to_string())
        .collect();
    classes.sort();
    classes.dedup();
    classes
}

#[test]
fn the_page_runs_its_script_and_shows_every_failing_connection() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = html_report(dir.path(), &[SCENARIOS]);
    let json = json_report(&[SCENARIOS]);
    let connections = json["connections"].as_array().unwrap().len();
    let failing = json["summary"]["failing"].as_u64().unwrap() as usize;
    assert!(failing > 0 && connections == failing);

    let dom = browse(&browser, dir.path(), &file_url(&page), &["--dump-dom"]);
    let body = tags(&dom, "<body");
    assert_eq!(
        attr(body[0], "data-ready"),
        Some("1"),
        "the script did not finish"
    );

    let rows = tags(&dom, "<tr class=\"conn");
    assert_eq!(rows.len(), connections, "one table row per connection");
    let table = tags(&dom, "<table id=\"conns\"");
    assert_eq!(
        attr(table[0], "data-shown"),
        Some(connections.to_string().as_str())
    );
    // The controls are shown once the script runs.
    let controls = tags(&dom, "<div id=\"controls\"");
    assert!(!controls[0].contains("hidden"), "{}", controls[0]);

    // A ladder per failing connection (there are fewer than the cap), each with its arrows.
    assert_eq!(tags(&dom, "<svg class=\"ladder\"").len(), failing);
    assert_eq!(tags(&dom, "<details class=\"ladder\"").len(), failing);
    assert!(tags(&dom, "<g class=\"rung").len() >= 2 * failing);

    // The chart: bars of exactly the failing classes, and a legend entry for each.
    let classes = failing_classes(&json);
    let mut bar_classes: Vec<&str> = tags(&dom, "<rect class=\"bar\"")
        .iter()
        .filter_map(|t| attr(t, "data-class"))
        .collect();
    bar_classes.sort();
    bar_classes.dedup();
    assert_eq!(bar_classes, classes);
    let mut legend: Vec<&str> = tags(&dom, "<li data-class=")
        .iter()
        .filter_map(|t| attr(t, "data-class"))
        .collect();
    legend.sort();
    assert_eq!(legend, classes);
}

#[test]
fn a_link_with_a_class_and_a_sort_filters_and_orders_the_table() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = html_report(dir.path(), &[SCENARIOS]);
    let json = json_report(&[SCENARIOS]);
    let class = "closed_before_response";
    let of_class = json["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["class"] == class)
        .count();
    assert!(of_class > 1);

    // Column 0 is the time: sorting it descending reverses the page's time order.
    let url = format!("{}#class={class}&sort=0&dir=desc", file_url(&page));
    let dom = browse(&browser, dir.path(), &url, &["--dump-dom"]);
    let rows = tags(&dom, "<tr class=\"conn");
    let shown: Vec<&&str> = rows.iter().filter(|t| !t.contains(" hidden")).collect();
    assert_eq!(shown.len(), of_class);
    assert!(shown.iter().all(|t| attr(t, "data-class") == Some(class)));
    let table = tags(&dom, "<table id=\"conns\"");
    assert_eq!(
        attr(table[0], "data-shown"),
        Some(of_class.to_string().as_str())
    );
    let order: Vec<usize> = rows
        .iter()
        .map(|t| {
            attr(t, "id")
                .and_then(|id| id.strip_prefix("conn-"))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut reversed: Vec<usize> = (0..rows.len()).collect();
    reversed.reverse();
    assert_eq!(order, reversed, "rows not sorted by time, descending");
    // The ladders of other classes are hidden too.
    let ladders = tags(&dom, "<details class=\"ladder\"");
    let visible = ladders.iter().filter(|t| !t.contains(" hidden")).count();
    assert_eq!(visible, of_class);
}

#[test]
fn the_screenshot_is_a_rendered_page() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = html_report(dir.path(), &[SCENARIOS]);
    let shot = dir.path().join("report.png");
    browse(
        &browser,
        dir.path(),
        &file_url(&page),
        &[
            "--window-size=1280,2400",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1280, 2400));
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "{:?}", frame.color_type);
    let rgb: Vec<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    // Text, tables and a chart, not a blank page: many colours, and a good share of pixels
    // that are not the white background.
    let mut colours = rgb.clone();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 100, "only {} colours", colours.len());
    let inked = rgb.iter().filter(|p| **p != [255, 255, 255]).count();
    assert!(
        inked > rgb.len() / 50,
        "only {inked} of {} pixels are not background",
        rgb.len()
    );
    // The chart and the swatches are drawn in the class colours: the most frequent failing
    // class here (closed_before_response, #c62828) must cover a visible area.
    let red = rgb.iter().filter(|p| **p == [0xc6, 0x28, 0x28]).count();
    assert!(
        red > 500,
        "only {red} pixels in closed_before_response's colour"
    );
}

#[test]
fn the_page_loads_nothing_from_outside_itself() {
    let dir = tempfile::tempdir().unwrap();
    let page = html_report(dir.path(), &[SCENARIOS]);
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains(
        "content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\""
    ));
    for element in ["<link", "<img", "<iframe", "<object", "<embed", "@import"] {
        assert!(!html.contains(element), "the page has {element}");
    }
    for reference in ["src=", "href=", "url("] {
        for (at, _) in html.match_indices(reference) {
            let target = html[at + reference.len()..].trim_start_matches(['"', '\'']);
            assert!(
                target.starts_with('#') || target.starts_with("data:"),
                "{reference} points outside the page: {}",
                &html[at..(at + 80).min(html.len())]
            );
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

/// A connection whose request path and Host header are markup: SYN, SYN-ACK, ACK, the
/// request, then the server's RST (a reset before any response).
fn hostile_capture() -> Vec<u8> {
    const CLIENT: [u8; 4] = [10, 0, 0, 1];
    const SERVER: [u8; 4] = [10, 0, 0, 2];
    let request = b"GET /<script>document.title='pwned'</script>?q=\"&x HTTP/1.1\r\nHost: <img src=x onerror=alert(1)>\r\n\r\n";
    let mut pcap = Vec::new();
    // Legacy pcap, microseconds, little-endian, snaplen 65535, Ethernet.
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const RST: u8 = 0x04;
    struct Segment<'a> {
        usec: u32,
        from_client: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'a [u8],
    }
    let segment = |usec, from_client, seq, ack, flags, payload| Segment {
        usec,
        from_client,
        seq,
        ack,
        flags,
        payload,
    };
    let req_len = request.len() as u32;
    let packets = [
        segment(0, true, 1000, 0, SYN, b""),
        segment(1_000, false, 5000, 1001, SYN | ACK, b""),
        segment(2_000, true, 1001, 5001, ACK, b""),
        segment(3_000, true, 1001, 5001, PSH | ACK, request),
        segment(50_000, false, 5001, 1001 + req_len, RST | ACK, b""),
    ];
    for Segment {
        usec,
        from_client,
        seq,
        ack,
        flags,
        payload,
    } in packets
    {
        let (src, dst, sport, dport) = if from_client {
            (CLIENT, SERVER, 40000u16, 80u16)
        } else {
            (SERVER, CLIENT, 80, 40000)
        };
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let total = 20 + tcp.len() as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let sum = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        pcap.extend_from_slice(&1_795_262_400u32.to_le_bytes());
        pcap.extend_from_slice(&usec.to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&frame);
    }
    pcap
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn markup_from_a_capture_is_shown_as_text_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("hostile.pcap");
    std::fs::write(&capture, hostile_capture()).unwrap();
    let json = json_report(&[capture.to_str().unwrap()]);
    assert_eq!(json["connections"][0]["class"], "reset_before_response");
    let page = html_report(dir.path(), &[capture.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    // The path reached the page, escaped, and no markup from it did.
    assert!(
        html.contains(
            "/&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;?q=&quot;&amp;x"
        )
    );
    assert!(!html.contains("<script>document"));
    assert!(!html.contains("<img"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );

    let Some(browser) = chromium() else { return };
    let dom = browse(&browser, dir.path(), &file_url(&page), &["--dump-dom"]);
    assert_eq!(attr(tags(&dom, "<body")[0], "data-ready"), Some("1"));
    assert_eq!(dom.matches("<script").count(), 1);
    assert!(!dom.contains("<img"));
    assert!(!dom.contains("<title>pwned</title>"));
    assert_eq!(tags(&dom, "<tr class=\"conn").len(), 1);
}

#[test]
fn html_is_refused_where_there_is_no_analysis() {
    for command in ["stats", "flows"] {
        for format in ["html", "markdown"] {
            let out = Command::cargo_bin("rstscope")
                .unwrap()
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    command,
                    "--format",
                    format,
                    "samples/scenarios/keepalive-race.pcap",
                ])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{command} --format {format}");
            assert!(out.stdout.is_empty());
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains(&format!("--format {format} is for the analysis")),
                "{command} --format {format}"
            );
        }
    }
}
