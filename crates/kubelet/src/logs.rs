//! Container logs: the CRI log files (`<RFC3339Nano> stdout|stderr F|P <text>` per line) under
//! `<agent>/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log`, read with kubectl's options:
//! tailLines, sinceSeconds/sinceTime, timestamps, limitBytes, previous, and follow
//! ([`stream`], which keeps reading until the container stops, across rotations).
//! [`rotate`] renames a log that grew past its limit (`<attempt>.log.<UTC stamp>`), keeping a
//! bounded number of files, as upstream's container log manager does; the runtime is then told
//! to reopen the log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// Why logs cannot be served; each maps to an HTTP status.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("pod {0:?} not found on this node")]
    PodNotFound(String),
    #[error("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating")]
    NoLogs { pod: String, container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { pod: String, container: String },
    #[error("{0}")]
    BadRequest(String),
}

impl Error {
    pub fn http_status(&self) -> u16 {
        match self {
            Error::PodNotFound(_) => 404,
            Error::NoLogs { .. } | Error::NoPrevious { .. } | Error::BadRequest(_) => 400,
        }
    }
}

/// kubectl's log options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time (nanoseconds since the epoch).
    pub since_ns: Option<i128>,
    pub timestamps: bool,
    pub previous: bool,
    pub limit_bytes: Option<usize>,
}

impl Options {
    /// From the query string of a pods/log request.
    pub fn from_query(q: &str) -> Result<Self, Error> {
        let mut o = Options::default();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let flag = v.is_empty() || v == "true" || v == "1";
            match k.as_ref() {
                "follow" => o.follow = flag,
                "timestamps" => o.timestamps = flag,
                "previous" => o.previous = flag,
                "tailLines" => {
                    o.tail_lines = Some(
                        v.parse()
                            .map_err(|_| Error::BadRequest(format!("invalid tailLines {v:?}")))?,
                    )
                }
                "limitBytes" => {
                    o.limit_bytes = Some(
                        v.parse()
                            .map_err(|_| Error::BadRequest(format!("invalid limitBytes {v:?}")))?,
                    )
                }
                "sinceSeconds" => {
                    let s: i64 = v
                        .parse()
                        .map_err(|_| Error::BadRequest(format!("invalid sinceSeconds {v:?}")))?;
                    let now = jiff::Timestamp::now().as_nanosecond();
                    o.since_ns = Some(now - i128::from(s) * 1_000_000_000);
                }
                "sinceTime" => {
                    let t: jiff::Timestamp = v
                        .parse()
                        .map_err(|_| Error::BadRequest(format!("invalid sinceTime {v:?}")))?;
                    o.since_ns = Some(t.as_nanosecond());
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One parsed CRI log line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse_line(l: &str) -> Option<Line<'_>> {
    let l = l.strip_suffix('\n').unwrap_or(l);
    let mut parts = l.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Line {
        time,
        stream,
        partial: tag == "P",
        text,
    })
}

/// How a line is written to the client.
pub fn render(line: &Line<'_>, timestamps: bool) -> String {
    let mut out = String::new();
    if timestamps {
        out.push_str(line.time);
        out.push(' ');
    }
    out.push_str(line.text);
    if !line.partial {
        out.push('\n');
    }
    out
}

fn line_time_ns(line: &Line<'_>) -> i128 {
    line.time
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_nanosecond())
        .unwrap_or(0)
}

/// The pod's log folder: `<logs>/<ns>_<pod>_<uid>`, the newest when a name was reused.
pub fn pod_dir(logs: &Path, ns: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{ns}_{pod}_");
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(logs).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(uid) = name.strip_prefix(&prefix) {
            if uid.contains('_') {
                continue;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, e.path()));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// The attempts logged for a container, newest first.
pub fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".log")
                .and_then(|a| a.parse().ok())
                .map(|a| (a, e.path()))
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    v
}

/// The file to read for `container` of `ns/pod` under `opts.previous`.
pub fn locate(
    logs: &Path,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(u32, PathBuf), Error> {
    let dir = pod_dir(logs, ns, pod).ok_or_else(|| Error::PodNotFound(format!("{ns}/{pod}")))?;
    let list = attempts(&dir.join(container));
    let pick = if previous { list.get(1) } else { list.first() };
    match pick {
        Some(p) => Ok(p.clone()),
        None if previous => Err(Error::NoPrevious {
            pod: pod.into(),
            container: container.into(),
        }),
        None => Err(Error::NoLogs {
            pod: pod.into(),
            container: container.into(),
        }),
    }
}

/// Rotated generations of `file` (`file.<stamp>`), oldest first.
pub fn rotated(file: &Path) -> Vec<PathBuf> {
    let Some(dir) = file.parent() else {
        return Vec::new();
    };
    let prefix = format!(
        "{}.",
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Renames `file` to `file.<stamp>` when it is larger than `max_bytes`, and removes the oldest
/// rotated files so that at most `max_files` (the live one included) remain. Returns whether it
/// rotated (the runtime must then reopen the log).
pub fn rotate(file: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<bool> {
    let size = std::fs::metadata(file)?.len();
    if size <= max_bytes {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%d-%H%M%S%.6f")
        .to_string();
    let mut to = file.as_os_str().to_owned();
    to.push(format!(".{stamp}"));
    std::fs::rename(file, &to)?;
    let old = rotated(file);
    let keep = max_files.saturating_sub(1).max(1);
    for f in old.iter().take(old.len().saturating_sub(keep)) {
        let _ = std::fs::remove_file(f);
    }
    Ok(true)
}

/// Sends the lines of rotated generations that the request covers (all of them, or the ones
/// needed to make up `opts.tail_lines` with the `in_current` lines of the live file).
async fn send_rotated(
    file: &Path,
    opts: &Options,
    in_current: usize,
    tx: &mpsc::Sender<Bytes>,
    budget: &mut usize,
) -> bool {
    let need = match opts.tail_lines {
        Some(n) if in_current >= n => return true,
        Some(n) => Some(n - in_current),
        None => None,
    };
    let mut ring: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for f in rotated(file) {
        let Ok(h) = tokio::fs::File::open(&f).await else {
            continue;
        };
        let mut r = BufReader::new(h);
        let mut buf = String::new();
        loop {
            buf.clear();
            match r.read_line(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let Some(l) = parse_line(&buf) else { continue };
                    if opts.since_ns.is_some_and(|s| line_time_ns(&l) < s) {
                        continue;
                    }
                    match need {
                        Some(n) => {
                            ring.push_back(buf.clone());
                            if ring.len() > n {
                                ring.pop_front();
                            }
                        }
                        None => {
                            if !send_line(&buf, opts, tx, budget).await {
                                return false;
                            }
                        }
                    }
                }
            }
        }
    }
    for l in ring {
        if !send_line(&l, opts, tx, budget).await {
            return false;
        }
    }
    true
}

/// Lines of `file` that pass the since filter.
async fn count_lines(file: &Path, opts: &Options) -> usize {
    let Ok(h) = tokio::fs::File::open(file).await else {
        return 0;
    };
    let mut r = BufReader::new(h);
    let mut buf = String::new();
    let mut n = 0;
    loop {
        buf.clear();
        match r.read_line(&mut buf).await {
            Ok(0) | Err(_) => return n,
            Ok(_) => {
                if parse_line(&buf)
                    .is_some_and(|l| opts.since_ns.is_none_or(|s| line_time_ns(&l) >= s))
                {
                    n += 1;
                }
            }
        }
    }
}

fn inode(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

/// Sends the log of `file` to `tx` as `opts` asks. With follow, keeps going while `alive()`
/// says the container still runs; stops when the receiver goes away.
pub async fn stream<F, Fut>(file: PathBuf, opts: Options, tx: mpsc::Sender<Bytes>, alive: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut budget = opts.limit_bytes.unwrap_or(usize::MAX);
    // Older generations first (only as many lines as a tail needs).
    let in_current = if opts.tail_lines.is_some() {
        count_lines(&file, &opts).await
    } else {
        0
    };
    if !send_rotated(&file, &opts, in_current, &tx, &mut budget).await {
        return;
    }
    let Ok(f) = tokio::fs::File::open(&file).await else {
        return;
    };
    let mut reader = BufReader::new(f);
    // Tail: find where the last N complete lines start with one pass over the file.
    if let Some(n) = opts.tail_lines {
        let mut starts: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
        let mut pos = 0u64;
        let mut buf = String::new();
        loop {
            buf.clear();
            match reader.read_line(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if let Some(l) = parse_line(&buf) {
                        if opts.since_ns.is_none_or(|s| line_time_ns(&l) >= s) {
                            starts.push_back(pos);
                            if starts.len() > n {
                                starts.pop_front();
                            }
                        }
                    }
                    pos += k as u64;
                }
            }
        }
        let from = if n == 0 {
            pos
        } else {
            starts.front().copied().unwrap_or(pos)
        };
        if reader.seek(std::io::SeekFrom::Start(from)).await.is_err() {
            return;
        }
    }
    let mut buf = String::new();
    let mut idle_checks = 0u32;
    loop {
        buf.clear();
        match reader.read_line(&mut buf).await {
            Ok(0) => {
                if !opts.follow {
                    return;
                }
                // Rotated away: the rest is in a new file at the same path.
                let same = match (reader.get_ref().metadata().await, std::fs::metadata(&file)) {
                    (Ok(open), Ok(now)) => inode(&open) == inode(&now),
                    _ => true,
                };
                if !same {
                    match tokio::fs::File::open(&file).await {
                        Ok(f) => {
                            reader = BufReader::new(f);
                            continue;
                        }
                        Err(_) => return,
                    }
                }
                // At the end: wait for more while the container runs.
                tokio::time::sleep(Duration::from_millis(100)).await;
                idle_checks += 1;
                if idle_checks.is_multiple_of(10) && !alive().await {
                    // One last read for lines written just before it stopped.
                    let mut rest = String::new();
                    while let Ok(k) = reader.read_line(&mut rest).await {
                        if k == 0 {
                            break;
                        }
                    }
                    if !rest.is_empty() {
                        for l in rest.split_inclusive('\n') {
                            if !send_line(l, &opts, &tx, &mut budget).await {
                                return;
                            }
                        }
                    }
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
            Ok(_) => {
                if !buf.ends_with('\n') {
                    // A line still being written: wait for the rest of it.
                    let mut more = String::new();
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        match reader.read_line(&mut more).await {
                            Ok(0) => {
                                if !opts.follow || tx.is_closed() {
                                    break;
                                }
                            }
                            Ok(_) => {
                                buf.push_str(&more);
                                more.clear();
                                if buf.ends_with('\n') {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                idle_checks = 0;
                if !send_line(&buf, &opts, &tx, &mut budget).await {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

async fn send_line(
    raw: &str,
    opts: &Options,
    tx: &mpsc::Sender<Bytes>,
    budget: &mut usize,
) -> bool {
    let Some(l) = parse_line(raw) else {
        return true;
    };
    if opts.since_ns.is_some_and(|s| line_time_ns(&l) < s) {
        return true;
    }
    let mut text = render(&l, opts.timestamps).into_bytes();
    if text.len() > *budget {
        text.truncate(*budget);
    }
    *budget -= text.len();
    if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
        return false;
    }
    *budget > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_parse_and_render_with_or_without_timestamps() {
        let l = parse_line("2024-01-01T00:00:00.123456789Z stdout F hello world\n").expect("line");
        assert_eq!(
            (l.stream, l.partial, l.text),
            ("stdout", false, "hello world")
        );
        assert_eq!(render(&l, false), "hello world\n");
        assert_eq!(
            render(&l, true),
            "2024-01-01T00:00:00.123456789Z hello world\n"
        );
        let p = parse_line("2024-01-01T00:00:00Z stderr P part").expect("line");
        assert_eq!(render(&p, false), "part");
    }

    async fn collect(file: PathBuf, opts: Options) -> String {
        let (tx, mut rx) = mpsc::channel(100);
        stream(file, opts, tx, || async { false }).await;
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).expect("utf8")
    }

    #[tokio::test]
    async fn tail_since_and_limit_select_lines() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("0.log");
        std::fs::write(
            &f,
            "2024-01-01T00:00:01Z stdout F one\n2024-01-01T00:00:02Z stdout F two\n2024-01-01T00:00:03Z stderr F three\n",
        )
        .expect("write");
        assert_eq!(
            collect(f.clone(), Options::default()).await,
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            collect(
                f.clone(),
                Options {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            )
            .await,
            "two\nthree\n"
        );
        let since = "2024-01-01T00:00:02Z"
            .parse::<jiff::Timestamp>()
            .expect("t")
            .as_nanosecond();
        assert_eq!(
            collect(
                f.clone(),
                Options {
                    since_ns: Some(since),
                    ..Default::default()
                }
            )
            .await,
            "two\nthree\n"
        );
        assert_eq!(
            collect(
                f.clone(),
                Options {
                    limit_bytes: Some(6),
                    ..Default::default()
                }
            )
            .await,
            "one\ntw"
        );
        assert_eq!(
            collect(
                f,
                Options {
                    tail_lines: Some(0),
                    ..Default::default()
                }
            )
            .await,
            ""
        );
    }

    #[tokio::test]
    async fn rotated_generations_are_read_before_the_live_file() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("0.log");
        std::fs::write(
            &f,
            "2024-01-01T00:00:01Z stdout F a\n2024-01-01T00:00:02Z stdout F b\n",
        )
        .expect("w");
        assert!(rotate(&f, 10, 5).expect("rotate"));
        assert!(!f.exists());
        std::fs::write(
            &f,
            "2024-01-01T00:00:03Z stdout F c\n2024-01-01T00:00:04Z stdout F d\n",
        )
        .expect("w");
        assert!(!rotate(&f, 1 << 20, 5).expect("small files stay"));
        assert_eq!(collect(f.clone(), Options::default()).await, "a\nb\nc\nd\n");
        assert_eq!(
            collect(
                f.clone(),
                Options {
                    tail_lines: Some(3),
                    ..Default::default()
                }
            )
            .await,
            "b\nc\nd\n"
        );
        assert_eq!(
            collect(
                f.clone(),
                Options {
                    tail_lines: Some(1),
                    ..Default::default()
                }
            )
            .await,
            "d\n"
        );
        // At most max_files generations survive.
        for _ in 0..4 {
            std::fs::write(&f, "2024-01-01T00:00:05Z stdout F e\n").expect("w");
            std::thread::sleep(std::time::Duration::from_millis(2));
            rotate(&f, 1, 3).expect("rotate");
        }
        assert_eq!(rotated(&f).len(), 2);
    }

    #[tokio::test]
    async fn follow_continues_in_the_new_file_after_a_rotation() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("0.log");
        std::fs::write(&f, "2024-01-01T00:00:01Z stdout F before\n").expect("w");
        let (tx, mut rx) = mpsc::channel(100);
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a2 = alive.clone();
        let task = tokio::spawn(stream(
            f.clone(),
            Options {
                follow: true,
                ..Default::default()
            },
            tx,
            move || {
                let a = a2.clone();
                async move { a.load(std::sync::atomic::Ordering::SeqCst) }
            },
        ));
        let first = rx.recv().await.expect("first line");
        assert_eq!(&first[..], b"before\n");
        assert!(rotate(&f, 1, 5).expect("rotate"));
        std::fs::write(&f, "2024-01-01T00:00:02Z stdout F after\n").expect("w");
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("in time")
            .expect("line");
        assert_eq!(&next[..], b"after\n");
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("follow ends")
            .expect("task");
    }

    #[test]
    fn previous_picks_the_attempt_before_the_newest() {
        let d = tempfile::tempdir().expect("tmp");
        let c = d.path().join("ns_p_uid1").join("c");
        std::fs::create_dir_all(&c).expect("dir");
        std::fs::write(c.join("0.log"), "").expect("w");
        std::fs::write(c.join("1.log"), "").expect("w");
        assert_eq!(locate(d.path(), "ns", "p", "c", false).expect("cur").0, 1);
        assert_eq!(locate(d.path(), "ns", "p", "c", true).expect("prev").0, 0);
        assert!(matches!(
            locate(d.path(), "ns", "q", "c", false),
            Err(Error::PodNotFound(_))
        ));
    }
}
