//! Directory listings and file facts: `ls -l` lines for LIST (the de-facto format every client
//! parses), bare names for NLST (RFC 959 §4.1.3), MLSx facts (RFC 3659 §7), and the MDTM time
//! format (RFC 3659 §2.3). Pure formatting; `now` is passed in, so output is reproducible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::types::{FileKind, Metadata};

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
    /// Hour, minute, second.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

impl DateTime {
    /// The UTC calendar time of `t` (times before 1970 count backwards).
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYYMMDDHHMMSS` (MDTM, MLSx `modify`).
pub fn write_timeval(t: SystemTime, out: &mut Vec<u8>) {
    let d = DateTime::from_system_time(t);
    let year = d.year.clamp(0, 9999);
    let s = format!("{year:04}{:02}{:02}{:02}{:02}{:02}", d.month, d.day, d.hour, d.minute, d.second);
    out.extend_from_slice(s.as_bytes());
}

fn write_mode(meta: &Metadata, out: &mut Vec<u8>) {
    out.push(match meta.kind {
        FileKind::Dir => b'd',
        FileKind::Symlink => b'l',
        FileKind::File => b'-',
        FileKind::Other => b'?',
    });
    const BITS: [(u32, u8); 9] = [
        (0o400, b'r'),
        (0o200, b'w'),
        (0o100, b'x'),
        (0o040, b'r'),
        (0o020, b'w'),
        (0o010, b'x'),
        (0o004, b'r'),
        (0o002, b'w'),
        (0o001, b'x'),
    ];
    for (bit, c) in BITS {
        out.push(if meta.mode & bit != 0 { c } else { b'-' });
    }
}

/// Appends one `ls -l` line with CRLF. Times within six months of `now` show the time of day,
/// older or future ones the year, as `ls` does. A symlink shows its target after ` -> `, as
/// `ls -l` and vsftpd do: lftp and wget find links (and what to fetch through them) that way.
pub fn write_list_line(name: &[u8], meta: &Metadata, now: SystemTime, out: &mut Vec<u8>) {
    write_mode(meta, out);
    let modified = meta.modified.unwrap_or(UNIX_EPOCH);
    let d = DateTime::from_system_time(modified);
    const HALF_YEAR: Duration = Duration::from_secs(182 * 86_400);
    let recent = modified <= now + Duration::from_secs(3600)
        && now.duration_since(modified).map_or(true, |age| age < HALF_YEAR);
    let month = MONTHS.get(d.month.saturating_sub(1) as usize).copied().unwrap_or(b"Jan");
    let when = if recent { format!("{:02}:{:02}", d.hour, d.minute) } else { format!("{:>5}", d.year) };
    let head = format!(
        " {:>3} ftp      ftp      {:>13} {} {:>2} {when} ",
        meta.nlink,
        meta.len,
        std::str::from_utf8(month).unwrap_or("Jan"),
        d.day
    );
    out.extend_from_slice(head.as_bytes());
    write_name(name, out);
    if let Some(target) = &meta.link_target {
        out.extend_from_slice(b" -> ");
        write_name(target, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a name for NLST with CRLF.
pub fn write_nlst_line(name: &[u8], out: &mut Vec<u8>) {
    write_name(name, out);
    out.extend_from_slice(b"\r\n");
}

/// A name with CR and LF replaced, so one entry is always one line.
fn write_name(name: &[u8], out: &mut Vec<u8>) {
    out.extend(name.iter().map(|&b| if b == b'\r' || b == b'\n' { b'?' } else { b }));
}

/// Appends MLSx facts and the name: `type=file;size=1;modify=...;perm=...;UNIX.mode=0644; name`
/// (no line end: MLSD adds CRLF, MLST puts it in a reply line).
///
/// A symlink that resolves is described by what it resolves to, so MLSD of a directory and
/// MLST of the same path agree (MLST follows links) and a client fetches it like any file or
/// directory; only a dangling link is `type=OS.unix=symlink`.
pub fn write_facts(name: &[u8], meta: &Metadata, writable: bool, out: &mut Vec<u8>) {
    let meta = meta.link_resolved.as_deref().unwrap_or(meta);
    let kind = match meta.kind {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "OS.unix=symlink",
        FileKind::Other => "OS.unix=other",
    };
    let perm = match (meta.kind, writable) {
        (FileKind::Dir, true) => "cdeflmp",
        (FileKind::Dir, false) => "el",
        (_, true) => "adfrw",
        (_, false) => "r",
    };
    out.extend_from_slice(format!("type={kind};size={};", meta.len).as_bytes());
    if let Some(t) = meta.modified {
        out.extend_from_slice(b"modify=");
        write_timeval(t, out);
        out.push(b';');
    }
    out.extend_from_slice(format!("perm={perm};UNIX.mode={:04o}; ", meta.mode & 0o7777).as_bytes());
    write_name(name, out);
}

/// The facts MLST and MLSD report, for FEAT.
pub const FACTS_FEATURE: &str = "MLST type*;size*;modify*;perm*;UNIX.mode*;";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn calendar() {
        let d = DateTime::from_system_time(at(0));
        assert_eq!((d.year, d.month, d.day, d.hour), (1970, 1, 1, 0));
        // 2024-02-29 12:34:56 UTC, a leap day.
        let d = DateTime::from_system_time(at(1_709_210_096));
        assert_eq!((d.year, d.month, d.day, d.hour, d.minute, d.second), (2024, 2, 29, 12, 34, 56));
        let mut out = Vec::new();
        write_timeval(at(1_709_210_096), &mut out);
        assert_eq!(out, b"20240229123456");
    }

    #[test]
    fn list_lines() {
        let now = at(1_709_210_096);
        let meta = Metadata::new(FileKind::File, 1234).modified(at(1_709_210_096 - 3600)).mode(0o644);
        let mut out = Vec::new();
        write_list_line(b"a\nb.txt", &meta, now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-rw-r--r--   1 ftp      ftp               1234 Feb 29 11:34 a?b.txt\r\n"
        );
        let old = Metadata::new(FileKind::Dir, 4096).modified(at(0)).mode(0o755);
        let mut out = Vec::new();
        write_list_line(b"d", &old, now, &mut out);
        assert!(String::from_utf8(out).unwrap().starts_with("drwxr-xr-x "));
    }

    #[test]
    fn facts() {
        let meta = Metadata::new(FileKind::File, 5).modified(at(0)).mode(0o600);
        let mut out = Vec::new();
        write_facts(b"f", &meta, false, &mut out);
        assert_eq!(out, b"type=file;size=5;modify=19700101000000;perm=r;UNIX.mode=0600; f");
    }

    #[test]
    fn symlinks() {
        let now = at(1_709_210_096);
        let target = Metadata::new(FileKind::File, 1234).modified(at(0)).mode(0o600);
        let link = Metadata::new(FileKind::File, 10)
            .modified(at(1_709_210_096 - 60))
            .mode(0o777)
            .symlink(b"target.txt".to_vec(), Some(target));
        assert_eq!(link.kind, FileKind::Symlink);
        let mut out = Vec::new();
        write_list_line(b"link", &link, now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "lrwxrwxrwx   1 ftp      ftp                 10 Feb 29 12:33 link -> target.txt\r\n"
        );
        // MLSx describe what the link resolves to.
        let mut out = Vec::new();
        write_facts(b"link", &link, true, &mut out);
        assert_eq!(out, b"type=file;size=1234;modify=19700101000000;perm=adfrw;UNIX.mode=0600; link");
        let dir_link = Metadata::new(FileKind::File, 3)
            .symlink(b"../d".to_vec(), Some(Metadata::new(FileKind::Dir, 4096)));
        let mut out = Vec::new();
        write_facts(b"dl", &dir_link, false, &mut out);
        assert_eq!(out, b"type=dir;size=4096;perm=el;UNIX.mode=0755; dl");

        // A dangling link: listed with its target, typed as a link.
        let dangling = Metadata::new(FileKind::File, 7).mode(0o777).symlink(b"missing".to_vec(), None);
        let mut out = Vec::new();
        write_list_line(b"d", &dangling, now, &mut out);
        assert!(String::from_utf8(out).unwrap().ends_with(" d -> missing\r\n"));
        let mut out = Vec::new();
        write_facts(b"d", &dangling, false, &mut out);
        assert_eq!(out, b"type=OS.unix=symlink;size=7;perm=r;UNIX.mode=0777; d");

        // CR and LF in a target cannot split the line.
        let odd = Metadata::new(FileKind::File, 3).symlink(b"a\r\nb".to_vec(), None);
        let mut out = Vec::new();
        write_list_line(b"o", &odd, now, &mut out);
        assert!(out.ends_with(b" o -> a??b\r\n"));
    }
}
