//! IPv6 (::1): curl with EPSV and EPRT, ftplib in both modes, and IPv4 + IPv6 listeners at
//! once.

mod common;

use std::fs;

use common::*;

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

fn v6_server(tag: &str) -> TestServer {
    let server = TestServer::builder(tag).listen("[::1]:0").start();
    assert!(server.addr().is_ipv6(), "{:?}", server.addrs());
    assert!(
        server.stdout_lines().iter().any(|l| l.starts_with("ringftpd listening on [::1]:")),
        "{:?}",
        server.stdout_lines()
    );
    server
}

#[test]
fn curl_ipv6_epsv_and_eprt() {
    let server = v6_server("v6-curl");
    let work = server.work();
    let on_server = server.root().join("down.bin");
    make_file(&on_server, MIB + 1, 31);
    for (mode, args, want, not) in [
        ("epsv", &[][..], "EPSV", ["PASV", "EPRT", "PORT"]),
        ("eprt", &["-P", "-"][..], "EPRT |2|::1|", ["EPSV", "PASV", "PORT"]),
    ] {
        let src = work.join(format!("src-{mode}.bin"));
        make_file(&src, MIB + 1, 32);
        let mut c = curl(&server);
        c.args(args).arg("-T").arg(&src).arg(server.url(&format!("up-{mode}.bin")));
        let up = run_text(&mut c).ok(&server);
        let dst = work.join(format!("dl-{mode}.bin"));
        let mut c = curl(&server);
        c.args(args).arg("-o").arg(&dst).arg(server.url("down.bin"));
        let down = run_text(&mut c).ok(&server);
        for r in [&up, &down] {
            let sent = curl_sent(&r.stderr);
            assert!(sent.iter().any(|c| c.starts_with(want)), "{mode}: curl did not send {want}: {sent:?}");
            for other in not {
                assert!(
                    !sent.iter().any(|c| c.starts_with(other)),
                    "{mode}: curl fell back to {other}: {sent:?}"
                );
            }
        }
        assert_same_file(&src, &server.root().join(format!("up-{mode}.bin")), &server);
        assert_same_file(&on_server, &dst, &server);
    }
}

#[test]
fn ftplib_ipv6_passive_and_active() {
    let server = v6_server("v6-ftplib");
    let work = server.work();
    let on_server = server.root().join("down.bin");
    make_file(&on_server, 2 * MIB + 3, 33);
    let src = work.join("src.bin");
    make_file(&src, MIB + 5, 34);
    for active in [false, true] {
        let mut opts = vec!["--user", USER, "--password", PASS];
        if active {
            opts.push("--active");
        }
        let dst = work.join(format!("dl-{active}.bin"));
        let r = py_opts(
            &server,
            &opts,
            &[&format!("put {} up-{active}.bin", q(&src)), &format!("get down.bin {}", q(&dst)), "list"],
        )
        .ok(&server);
        assert!(r.stdout.contains("put: 226"), "{}", r.describe());
        assert!(r.stdout.contains("get: 226"), "{}", r.describe());
        assert!(r.stdout.contains("list: 226"), "{}", r.describe());
        assert_same_file(&src, &server.root().join(format!("up-{active}.bin")), &server);
        assert_same_file(&on_server, &dst, &server);
    }
    // IPv6 address checks: EPRT elsewhere or to a low port is refused; EPSV for IPv4 is 522.
    let r = py(&server, &["raw EPRT |2|::2|30000|", "raw EPRT |2|::1|80|", "raw EPSV 1", "raw EPSV 2"])
        .ok(&server);
    let raw = r.lines_with("raw: ");
    assert!(raw[0].starts_with("raw: ERR 501"), "{}", r.describe());
    assert!(raw[1].starts_with("raw: ERR 501"), "{}", r.describe());
    assert!(raw[2].starts_with("raw: ERR 522"), "{}", r.describe());
    assert!(raw[3].starts_with("raw: 229"), "{}", r.describe());
}

#[test]
fn ipv4_and_ipv6_listeners_together() {
    let server = TestServer::builder("dual").listen("127.0.0.1:0").listen("[::1]:0").start();
    assert_eq!(server.addrs().len(), 2);
    assert!(server.addrs()[0].is_ipv4() && server.addrs()[1].is_ipv6());
    fs::write(server.root().join("both.txt"), b"over v4 and v6\n").unwrap();
    for addr in server.addrs() {
        let dst = server.work().join(format!("got-{}", addr.port()));
        let mut c = curl(&server);
        c.arg("-o").arg(&dst).arg(url_for(*addr, "both.txt"));
        run_text(&mut c).ok(&server);
        assert_eq!(fs::read(&dst).unwrap(), b"over v4 and v6\n", "via {addr}");
    }
}
