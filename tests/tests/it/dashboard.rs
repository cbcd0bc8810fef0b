//! The live dashboard (issue 23) against a real `expcluster coordinator` and worker
//! on loopback: headless Chromium logs in with the one-time URL and watches a stage
//! of command jobs (the jobs table fills, the learning curve gains points while the
//! jobs run, their stdout shows live, the claim's verdict appears when the stage
//! ends), every user string renders as text, and screenshots are saved. Without the
//! client token nothing is served.
//!
//! The jobs wait on gate files the test creates, so "while the job runs" is a state
//! the test holds, not a race.

use expcluster_tests::browser::Browser;
use expcluster_tests::{
    expcluster, expcluster_bin, path_with_venv, start_worker, token_file, Proc,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const XSS: &str = "<script>alert(1)</script>";

/// Three loss points, a wait for `gate/more`, three more and a marker line, a wait for
/// `gate/end`, then the accuracy its params decide.
const RUNFILE: &str = r#"import json, os, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
def wait(name):
    while not os.path.exists(os.path.join(params["gate"], name)):
        time.sleep(0.05)
for step in range(3):
    print(f"loss: {1.0 / (step + 1) + 0.1 * seed}", flush=True)
print("<b>not bold</b> <img src=x>", flush=True)
wait("more")
for step in range(3, 6):
    print(f"loss: {1.0 / (step + 1) + 0.1 * seed}", flush=True)
print("after-more marker", flush=True)
wait("end")
print(f"acc: {params['base'] + params['step'] * seed}", flush=True)
"#;

fn config(gate: &Path) -> String {
    format!(
        "name: dash\nprimary_metric: {{name: acc, goal: max}}\nmetrics: [loss, acc]\n\
job:\n  command: [python, runfile.py]\n  params: {{base: 0.9, step: 0.01, gate: {gate:?}, tag: x}}\n\
methods:\n  proposed: {{}}\n  baseline: {{params.base: 0.5, params.step: 0.02}}\n\
stages:\n  baselines: {{seeds: 2, sweep: {{params.tag: [{XSS:?}]}}}}\n\
claims:\n  - {{id: beats-baseline, better: proposed, than: baseline, metric: acc,\n     statement: {statement:?}}}\n\
resources: {{max_attempts: 1, timeout: 5m}}\n",
        statement = format!("{XSS} <img src=x onerror=\"document.title='pwned'\">"),
    )
}

/// A coordinator serving the dashboard: its gRPC address, dashboard URL and
/// one-time login URL.
struct Served {
    _process: Proc,
    address: String,
    url: String,
    login_url: String,
}

fn start_with_dashboard(root: &Path) -> Served {
    let mut child = Command::new(expcluster_bin())
        .args(["coordinator", "--workspace"])
        .arg(root)
        .args(["--listen", "127.0.0.1:0", "--dashboard", "127.0.0.1:0"])
        .env("PATH", path_with_venv())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = Proc { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address announced: {line:?}"))
        .to_owned();
    expcluster_tests::remember_workspace(&address, root);
    // The dashboard line is on stderr; the rest of stderr is passed through.
    let (found, announced) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("dashboard: ") {
                let _ = found.send(line.clone());
            }
            eprintln!("{line}");
        }
    });
    let line = announced
        .recv_timeout(Duration::from_secs(30))
        .expect("the coordinator did not announce its dashboard");
    let urls: Vec<&str> = line
        .split_whitespace()
        .filter(|word| word.starts_with("http://127.0.0.1:"))
        .map(|word| word.trim_end_matches(')'))
        .collect();
    assert_eq!(urls.len(), 2, "{line}");
    assert!(urls[1].contains("/login?once="), "{line}");
    Served {
        _process: process,
        address,
        url: urls[0].to_owned(),
        login_url: urls[1].to_owned(),
    }
}

/// Submits the `baselines` stage to the coordinator at `address`, detached.
fn submit_baselines(address: &str) {
    let submitted = expcluster(&[
        "submit",
        "--stage",
        "baselines",
        "--coordinator",
        address,
        "--detach",
        "--force",
    ]);
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
}

/// One HTTP/1.1 request on loopback: (status, head, body).
fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // An event stream does not end: read what came until the timeout or the end.
    let mut buffer = [0u8; 65536];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        if path.starts_with("/api/events") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    (status, head.to_owned(), body.to_owned())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn read_token(root: &Path, role: &str) -> String {
    std::fs::read_to_string(token_file(root, role))
        .unwrap()
        .trim()
        .to_owned()
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A screenshot is a PNG with content: decoded, of the viewport's size, and with
/// many distinct colours (a blank or single-colour page has one or two).
fn assert_screenshot(bytes: &[u8], path: &Path) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert!(
        info.width >= 800 && info.height >= 600,
        "{}: {}x{}",
        path.display(),
        info.width,
        info.height
    );
    let step = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..info.buffer_size()].chunks(step).collect();
    assert!(
        colours.len() > 20,
        "{}: only {} colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn the_dashboard_shows_a_stage_live_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dash");
    let gate = dir.path().join("gate");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&gate).unwrap();
    std::fs::write(root.join("config.yaml"), config(&gate)).unwrap();
    std::fs::write(root.join("runfile.py"), RUNFILE).unwrap();
    std::fs::write(
        root.join("idea.md"),
        format!("# dash\n\n## Hypothesis\n{XSS}\n"),
    )
    .unwrap();
    let served = start_with_dashboard(&root);
    let _worker = start_worker(&served.address, 4, &dir.path().join("worker"));
    let shots = screenshots_dir();
    let browser = Browser::start();
    let mut page = browser.page();

    // Without a session the page is the login form, and shows no data.
    page.navigate(&served.url);
    assert_eq!(page.eval("location.pathname"), "/login");
    assert_eq!(
        page.eval("document.querySelectorAll('input[type=password]').length"),
        1
    );
    // The one-time URL logs the browser in and lands on the overview.
    page.navigate(&served.login_url);
    assert_eq!(page.eval("location.pathname"), "/");
    page.wait_for(
        "the stages table",
        Duration::from_secs(30),
        "document.querySelector('#stages tr[data-stage=baselines]')",
    );

    submit_baselines(&served.address);

    // The stage's page: the jobs table fills and the curve gets its first points.
    page.eval("location.hash = '#/stage/baselines'");
    page.wait_for(
        "4 jobs running",
        Duration::from_secs(60),
        "document.querySelectorAll('#jobs td.state-running').length === 4",
    );
    page.wait_for("two curves of 3 points", Duration::from_secs(60),
        "(document.querySelector('#curves svg') || {getAttribute: () => '0'}).getAttribute('data-points') === '6'");
    let messages_before: u64 = page
        .eval("Number(document.body.dataset.liveMessages || 0)")
        .as_u64()
        .unwrap();
    let shot = shots.join("stage-running.png");
    assert_screenshot(&page.screenshot(&shot), &shot);

    // The jobs go on: the same page, not reloaded, draws the new points.
    page.eval("window.__same_page = true");
    std::fs::write(gate.join("more"), "").unwrap();
    page.wait_for(
        "two curves of 6 points",
        Duration::from_secs(60),
        "document.querySelector('#curves svg').getAttribute('data-points') === '12'",
    );
    assert_eq!(
        page.eval("window.__same_page"),
        true,
        "the page was reloaded"
    );
    let messages_after = page
        .eval("Number(document.body.dataset.liveMessages)")
        .as_u64()
        .unwrap();
    assert!(
        messages_after > messages_before,
        "no live message: {messages_before} → {messages_after}"
    );
    // Mean ± CI across the two seeds: a shaded band per variant.
    assert_eq!(
        page.eval("document.querySelectorAll('#curves svg polygon').length"),
        2
    );
    // Sortable: a click on `seed` puts seed 0 first, a second click seed 1.
    page.eval(
        "[...document.querySelectorAll('#jobs th')].find(th => th.textContent === 'seed').click()",
    );
    let first_seed =
        "document.querySelector('#jobs tbody tr[data-job] td:nth-child(3)').textContent";
    assert_eq!(page.eval(first_seed), "0");
    page.eval(
        "[...document.querySelectorAll('#jobs th')].find(th => th.textContent === 'seed').click()",
    );
    assert_eq!(page.eval(first_seed), "1");
    let shot = shots.join("stage-curves.png");
    assert_screenshot(&page.screenshot(&shot), &shot);

    // A running job's stdout, live.
    let job: String = serde_json::from_value(
        page.eval("document.querySelector('#jobs tbody tr[data-job]').dataset.job"),
    )
    .unwrap();
    page.eval(&format!("location.hash = '#/job/{job}'"));
    page.wait_for("the job's live stdout", Duration::from_secs(60),
        "document.querySelector('#stdout') && document.querySelector('#stdout').textContent.includes('after-more marker')");
    // Its loss curve, from the job's thinned series: the six steps printed so far.
    page.wait_for(
        "the job's loss curve",
        Duration::from_secs(60),
        "[...document.querySelectorAll('#job-curves svg')].some(svg => svg.getAttribute('data-points') === '6')",
    );
    assert!(page
        .eval("document.querySelector('#job-info').textContent")
        .as_str()
        .unwrap()
        .contains("running"));
    let stdout = page.eval("document.querySelector('#stdout').textContent");
    assert!(
        stdout
            .as_str()
            .unwrap()
            .contains("<b>not bold</b> <img src=x>"),
        "{stdout}"
    );
    let shot = shots.join("job-stdout.png");
    assert_screenshot(&page.screenshot(&shot), &shot);

    // The stage ends: the overview shows the claim's verdict.
    std::fs::write(gate.join("end"), "").unwrap();
    page.eval("location.hash = '#/'");
    page.wait_for(
        "the claim's verdict",
        Duration::from_secs(120),
        "[...document.querySelectorAll('#claims td.verdict')].map(td => td.textContent).join(',')",
    );
    assert_eq!(
        page.eval("document.querySelector('#claims td.verdict').textContent"),
        "supported"
    );
    page.wait_for("the stage finished", Duration::from_secs(30),
        "document.querySelector('#stages tr[data-stage=baselines]').textContent.includes('finished')");
    let shot = shots.join("overview-claims.png");
    assert_screenshot(&page.screenshot(&shot), &shot);

    // Every user string is text: the statement, the sweep value, idea.md.
    let text = page.eval("document.body.innerText");
    assert!(text.as_str().unwrap().contains(XSS), "{text}");
    assert_eq!(
        page.eval("document.querySelectorAll('script').length"),
        2,
        "only app.js and chart.js"
    );
    assert_eq!(page.eval("document.querySelectorAll('img, b').length"), 0);
    assert_eq!(page.eval("document.title"), "expcluster");
    page.eval("location.hash = '#/stage/baselines'");
    page.wait_for("the sweep value as text", Duration::from_secs(30),
        &format!("[...document.querySelectorAll('#jobs td')].some(td => td.textContent.includes({XSS:?}))"));
    assert_eq!(page.eval("document.querySelectorAll('script').length"), 2);

    // The workers' page section lists the worker with its slots.
    page.eval("location.hash = '#/'");
    page.wait_for("the worker", Duration::from_secs(30),
        "document.querySelector('#workers tbody tr td:nth-child(3)') && document.querySelector('#workers tbody tr td:nth-child(3)').textContent === '4'");
}

/// The number of job rows in the DOM.
const DOM_ROWS: &str = "document.querySelectorAll('#jobs tbody tr[data-job]').length";

#[test]
fn a_stage_of_thousands_of_jobs_keeps_only_the_rows_in_view_in_the_dom() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dash-many");
    std::fs::create_dir_all(&root).unwrap();
    // 2 methods x 1,000 seeds, and no worker: every job stays queued.
    let config = config(&dir.path().join("gate")).replace("seeds: 2,", "seeds: 1000,");
    assert!(config.contains("seeds: 1000,"), "{config}");
    std::fs::write(root.join("config.yaml"), config).unwrap();
    std::fs::write(root.join("runfile.py"), RUNFILE).unwrap();
    let served = start_with_dashboard(&root);
    submit_baselines(&served.address);
    let browser = Browser::start();
    let mut page = browser.page();
    page.navigate(&served.login_url);
    page.eval("location.hash = '#/stage/baselines'");
    page.wait_for(
        "the 2,000-job table",
        Duration::from_secs(60),
        "document.querySelector('#jobs') && document.querySelector('#jobs').dataset.rows === '2000'",
    );
    let drawn = page.eval(DOM_ROWS).as_u64().unwrap();
    assert!(drawn > 0 && drawn < 200, "{drawn} rows in the DOM");
    assert_eq!(
        page.eval("document.querySelector('#stage-summary').textContent"),
        "2000 jobs: 0 succeeded, 0 running, 2000 queued, 0 failed"
    );
    let shot = screenshots_dir().join("stage-2000-jobs.png");
    assert_screenshot(&page.screenshot(&shot), &shot);

    // Scrolled to the end, the last rows are drawn (a spacer stands for the rest).
    page.eval("document.querySelector('.table-scroll').scrollTop = 1e9");
    page.wait_for(
        "the last rows",
        Duration::from_secs(30),
        "document.querySelector('#jobs tbody').lastElementChild.dataset.job !== undefined \
         && document.querySelector('#jobs tbody').firstElementChild.classList.contains('spacer')",
    );
    let drawn = page.eval(DOM_ROWS).as_u64().unwrap();
    assert!(
        drawn > 0 && drawn < 200,
        "{drawn} rows in the DOM at the end"
    );

    // Sorted in memory over every job, not only those drawn: at the top, seed
    // descending puts a seed 999 first, ascending a seed 0.
    page.eval("document.querySelector('.table-scroll').scrollTop = 0");
    page.wait_for(
        "the first rows again",
        Duration::from_secs(30),
        "document.querySelector('#jobs tbody').firstElementChild.dataset.job !== undefined",
    );
    let click_seed =
        "[...document.querySelectorAll('#jobs th')].find(th => th.textContent === 'seed').click()";
    let first_seed =
        "document.querySelector('#jobs tbody tr[data-job] td:nth-child(3)').textContent";
    page.eval(click_seed);
    assert_eq!(page.eval(first_seed), "0");
    page.eval(click_seed);
    assert_eq!(page.eval(first_seed), "999");
    assert!(page.eval(DOM_ROWS).as_u64().unwrap() < 200);
    // The hostile sweep value is text in every drawn row.
    assert_eq!(
        page.eval(&format!(
            "[...document.querySelectorAll('#jobs tbody tr[data-job] td')].filter(td => td.textContent.includes({XSS:?})).length === document.querySelectorAll('#jobs tbody tr[data-job]').length"
        )),
        true
    );
    assert_eq!(page.eval("document.querySelectorAll('script').length"), 2);
}

#[test]
fn without_the_client_token_the_dashboard_serves_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dash-auth");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("config.yaml"), config(&dir.path().join("gate"))).unwrap();
    let served = start_with_dashboard(&root);
    let (client, worker) = (read_token(&root, "client"), read_token(&root, "worker"));
    let wrong = format!("ecc_{}", "0".repeat(64));
    for path in [
        "/api/overview",
        "/api/claims",
        "/api/idea",
        "/api/stages/baselines/jobs",
        "/api/events",
    ] {
        let (status, _, body) = http(&served.url, "GET", path, &[], "");
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(
            !body.contains("baselines") || path.contains("baselines"),
            "{path}: {body}"
        );
        let (status, _, _) = http(
            &served.url,
            "GET",
            path,
            &[("Authorization", &bearer(&wrong))],
            "",
        );
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _, body) = http(
            &served.url,
            "GET",
            path,
            &[("Authorization", &bearer(&worker))],
            "",
        );
        assert_eq!(status, 403, "{path} with the worker token");
        assert!(body.contains("worker token cannot"), "{body}");
        let (status, _, _) = http(
            &served.url,
            "GET",
            path,
            &[("Cookie", "expcluster_session=forged")],
            "",
        );
        assert_eq!(status, 401, "{path} with a forged session");
        let (status, _, _) = http(
            &served.url,
            "GET",
            path,
            &[("Authorization", &bearer(&client))],
            "",
        );
        assert_eq!(status, 200, "{path} with the client token");
    }
    // The page itself sends a browser without a session to the login form.
    let (status, head, _) = http(&served.url, "GET", "/", &[], "");
    assert_eq!(status, 303, "{head}");
    assert!(head.to_lowercase().contains("location: /login"), "{head}");

    // The login form: the worker token and a wrong one get no session.
    let form = |token: &str| format!("token={token}");
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    for (token, expected) in [(&worker, 403), (&wrong, 401)] {
        let (status, head, _) = http(&served.url, "POST", "/login", &[form_type], &form(token));
        assert_eq!(status, expected, "{head}");
        assert!(!head.to_lowercase().contains("set-cookie"), "{head}");
    }
    let (status, head, _) = http(&served.url, "POST", "/login", &[form_type], &form(&client));
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let (status, _, body) = http(
        &served.url,
        "GET",
        "/api/overview",
        &[("Cookie", session)],
        "",
    );
    assert_eq!(status, 200);
    let overview: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["idea"], "dash-auth");

    // The one-time URL works once.
    let once = served
        .login_url
        .trim_start_matches(served.url.trim_end_matches('/'));
    let (status, head, _) = http(&served.url, "GET", once, &[], "");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("set-cookie: expcluster_session="), "{head}");
    let (status, head, _) = http(&served.url, "GET", once, &[], "");
    assert_eq!(status, 401, "a second use: {head}");
    assert!(!head.contains("set-cookie"), "{head}");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dash-open");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("config.yaml"), config(&dir.path().join("gate"))).unwrap();
    let output = Command::new(expcluster_bin())
        .args(["coordinator", "--workspace"])
        .arg(&root)
        .args(["--listen", "127.0.0.1:0", "--dashboard", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve the dashboard on 0.0.0.0")
            && stderr.contains("--dashboard-insecure-http"),
        "{stderr}"
    );
}
