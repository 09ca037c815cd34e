"""Issue 12, k8s and webserver squads: the new analyzers on realistic outputs of the real programs."""

from __future__ import annotations

from typing import Any

from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

K8S = load_analyzers(BUILTIN_BUNDLES / "k8s")
WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")


def run(table: Any, name: str, stdout: str, facts: dict[str, Any] | None = None, *, exit_code: int = 0,
        stderr: str = "", **params: Any) -> Analysis:
    out = Output(argv=["x"], exit_code=exit_code, stdout=stdout, stderr=stderr, params=params)
    return analyze(table, name, out, facts or {})


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.findings}


def text(result: Analysis) -> str:
    return "\n".join(f.text for f in result.findings)


# -- webserver --------------------------------------------------------------------------------------

SS_LOOPBACK = """State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*     users:(("systemd-resolve",pid=588,fd=14))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*     users:(("sshd",pid=702,fd=3))
LISTEN 0      511        127.0.0.1:80         0.0.0.0:*     users:(("nginx",pid=21992,fd=6),("nginx",pid=21990,fd=6))
"""


def test_a_server_bound_to_loopback_only_is_the_cause_and_a_public_one_is_not() -> None:
    result = run(WEB, "web.sockets", SS_LOOPBACK)
    assert codes(result) == {"listen_loopback_only"}
    assert "127.0.0.1" in text(result) and "listen 80;" in text(result)
    public = SS_LOOPBACK.replace("127.0.0.1:80 ", "0.0.0.0:80   ")
    assert "listen_loopback_only" not in codes(run(WEB, "web.sockets", public))


def test_status_without_systemd_is_unavailable_not_a_stopped_server() -> None:
    result = run(WEB, "web.status", "", exit_code=1, unit="nginx",
                 stderr="System has not been booted with systemd as init system (PID 1). Can't operate.\n"
                        "Failed to connect to bus: Host is down")
    assert result.facts == {"unavailable": True}
    assert not result.findings


PS = """    PID    PPID USER         ELAPSED COMMAND
      1       0 root     18-05:20:11 /sbin/init
   1022       1 root     18-05:19:50 nginx: master process /usr/sbin/nginx -g daemon on; master_process on;
   1023    1022 nginx    18-05:19:50 nginx: worker process
   3301       1 root     11-02:45:09 php-fpm: master process (/etc/php/8.1/fpm/php-fpm.conf)
  61204    3301 www-data    01:41:22 php-fpm: pool www
"""


def test_processes_name_the_php_fpm_unit_its_log_and_the_servers_user() -> None:
    result = run(WEB, "web.processes", PS)
    assert result.facts["php_fpm_units"] == ["php8.1-fpm"]
    assert result.facts["php_fpm_logs"] == ["/var/log/php8.1-fpm.log"]
    assert result.facts["web_user"] == "nginx"
    stopped = run(WEB, "web.processes", "\n".join(PS.splitlines()[:2]))
    assert codes(stopped) == {"server_not_running"}


def test_a_socket_the_servers_user_cannot_open_is_a_permission_problem() -> None:
    namei = """f: /run/php/php8.2-fpm.sock
drwxr-xr-x root     root     /
drwxr-xr-x root     root     run
drwxr-xr-x www-data www-data php
srw-rw---- www-data www-data php8.2-fpm.sock
"""
    result = run(WEB, "web.namei", namei, {"web_user": "nginx"})
    assert codes(result) == {"path_permission_denied"}
    assert "not a stopped service" in text(result) and "srw-rw---- www-data:www-data" in text(result)
    assert codes(run(WEB, "web.namei", namei, {"web_user": "www-data"})) == {"path_permissions_ok"}


FPM_LOG = """[06-Dec-2026 14:28:40] WARNING: [pool www] server reached pm.max_children setting (40), consider raising it
[06-Dec-2026 14:31:07] WARNING: [pool www] child 48812 exited on signal 9 (SIGKILL) after 1211.402118 seconds from start
[06-Dec-2026 14:31:07] NOTICE: [pool www] child 51190 started
"""
KERNEL = """Dec 06 14:31:07 web-3 kernel: php-fpm8.1 invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0
Dec 06 14:31:07 web-3 kernel: Out of memory: Killed process 48812 (php-fpm8.1) total-vm:611248kB, anon-rss:158412kB, file-rss:3104kB, shmem-rss:21660kB, UID:33 pgtables:812kB oom_score_adj:0
"""


def test_max_children_with_oom_kills_says_the_pool_does_not_fit_in_memory() -> None:
    log = run(WEB, "web.php_fpm_log", FPM_LOG, path="/var/log/php8.1-fpm.log")
    assert codes(log) == {"fpm_max_children", "fpm_children_killed"}
    assert log.facts["fpm_max_children"] == 40
    free = run(WEB, "web.memory", "               total        used        free      shared  buff/cache   available\n"
                                  "Mem:            3911        1204         988          92        1718        2381\n"
                                  "Swap:              0           0           0\n")
    assert free.facts == {"memory_total_mb": 3911} and "no_swap" in codes(free)
    kernel = run(WEB, "web.kernel", KERNEL, {"fpm_max_children": 40, "memory_total_mb": 3911})
    assert codes(kernel) == {"oom_killer", "oom_pool_too_big"}
    assert "makes it worse" in text(kernel) and "3911 MiB" in text(kernel)


def test_empty_kernel_log_is_no_data_not_clean() -> None:
    result = run(WEB, "web.kernel", "-- No entries --\n")
    assert codes(result) == {"no_data"} and result.findings[0].data["check"] == "the kernel messages"


def test_a_pool_typo_is_reported_with_its_file_and_line_from_the_status() -> None:
    status = """× php8.2-fpm.service - The PHP 8.2 FastCGI Process Manager
     Loaded: loaded (/lib/systemd/system/php8.2-fpm.service; enabled; preset: enabled)
     Active: failed (Result: exit-code) since Mon 2026-12-07 11:32:41 UTC; 24min ago
   Main PID: 40112 (code=exited, status=78)

Dec 07 11:32:40 web-5 php-fpm8.2[40112]: [07-Dec-2026 11:32:40] ERROR: [/etc/php/8.2/fpm/pool.d/www.conf:117] unknown entry 'pm.max_chidren'
Dec 07 11:32:41 web-5 systemd[1]: Failed to start php8.2-fpm.service - The PHP 8.2 FastCGI Process Manager.
"""
    result = run(WEB, "web.php_fpm_status", status, exit_code=3, unit="php8.2-fpm")
    assert codes(result) == {"php_fpm_config_error", "php_fpm_failed"}
    assert "unknown entry 'pm.max_chidren' in /etc/php/8.2/fpm/pool.d/www.conf line 117" in text(result)


def test_access_log_breaks_down_status_codes_and_flags_many_5xx() -> None:
    lines = [f'10.0.0.{i % 3} - - [07/Dec/2026:10:00:0{i % 10} +0000] "GET /api/x?id={i} HTTP/1.1" '
             f'{502 if i % 4 == 0 else 200} 512 "-" "curl/8"' for i in range(20)]
    result = run(WEB, "web.access_log", "\n".join(lines))
    assert codes(result) == {"access_summary", "access_5xx"}
    assert "200: 15" in text(result) and "502: 5" in text(result) and "/api/x (20)" in text(result)


# -- k8s --------------------------------------------------------------------------------------------

def test_a_container_that_exits_zero_under_a_deployment_should_be_a_job() -> None:
    describe = """Name:             ledger-migrate-5f7d8c9b6-w4zpk
Namespace:        billing
Status:           Running
Controlled By:  ReplicaSet/ledger-migrate-5f7d8c9b6
Containers:
  migrate:
    Image:         registry.corp.example/billing/ledger:4.7.0
    State:          Waiting
      Reason:       CrashLoopBackOff
    Last State:     Terminated
      Reason:       Completed
      Exit Code:    0
    Ready:          False
    Restart Count:  13
"""
    result = run(K8S, "k8s.describe_pod", describe, pod="ledger-migrate-5f7d8c9b6-w4zpk", namespace="billing")
    assert codes(result) == {"exits_zero"}
    assert "exit code 0" in text(result) and "Job" in text(result)


def test_liveness_probe_on_another_port_than_the_app_listens_is_the_wrong_port() -> None:
    logs = '{"level":"info","msg":"http server listening on 0.0.0.0:9090"}\n'
    result = run(K8S, "k8s.logs", logs, {"liveness_ports": [8080]}, pod="api-1")
    assert "probe_wrong_port" in codes(result)
    assert "8080" in text(result) and "9090" in text(result) and "not slow start-up" in text(result)
    same = run(K8S, "k8s.logs", logs.replace("9090", "8080"), {"liveness_ports": [8080]}, pod="api-1")
    assert "probe_wrong_port" not in codes(same)


def test_coredns_loop_is_recognised_with_its_line() -> None:
    log = ('[FATAL] plugin/loop: Loop (127.0.0.1:38841 -> :53) detected for zone ".", see '
           'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO 5713089841924037220.2287405836018571649."\n')
    result = run(K8S, "k8s.dns_logs", log)
    assert codes(result) == {"coredns_loop"} and "127.0.0.53" in text(result) and "plugin/loop" in text(result)


def test_ingress_controller_without_the_tls_secret_serves_its_fake_certificate() -> None:
    log = ('W1207 11:57:08.612511       7 controller.go:1386] Error getting SSL certificate "web/portal-tls": '
           "local SSL certificate web/portal-tls was not found. Using default certificate\n")
    result = run(K8S, "k8s.controller_logs", log)
    assert codes(result) == {"ingress_tls_secret_missing"}
    assert result.findings[0].data["secret"] == "web/portal-tls" and "Fake Certificate" in text(result)


def test_ingress_backend_without_endpoints() -> None:
    describe = """Name:             shop
Namespace:        web
TLS:
  shop-tls terminates shop.example.com
Rules:
  Host              Path  Backends
  ----              ----  --------
  shop.example.com
                    /     shop-web:80 (<error: endpoints "shop-web" not found>)
Events:           <none>
"""
    result = run(K8S, "k8s.describe_ingress", describe)
    assert codes(result) == {"ingress_backend_missing"}
    assert result.facts["ingress_tls_secrets"] == ["shop-tls"]


def test_hpa_without_metrics_and_at_its_maximum() -> None:
    table = """NAME       REFERENCE             TARGETS         MINPODS   MAXPODS   REPLICAS   AGE
checkout   Deployment/checkout   <unknown>/70%   2         10        2          5d
search     Deployment/search     95%/70%         2         6         6          5d
"""
    result = run(K8S, "k8s.hpa", table)
    assert codes(result) == {"hpa_no_metrics", "hpa_at_max"}
    assert result.facts["hpas"] == ["checkout", "search"]
    assert codes(run(K8S, "k8s.hpa", "No resources found in shop namespace.\n")) == {"no_data"}


def test_job_backoff_limit_exceeded_names_its_pods() -> None:
    jobs = """NAME                  STATUS   COMPLETIONS   DURATION   AGE
nightly-export-2941   Failed   0/1           12m        12m
"""
    assert run(K8S, "k8s.jobs", jobs).facts["failed_jobs"] == ["nightly-export-2941"]
    describe = """Name:             nightly-export-2941
Namespace:        data
Backoff Limit:    6
Pods Statuses:    0 Active (0 Ready) / 0 Succeeded / 7 Failed
Events:
  Type     Reason                Age   From            Message
  ----     ------                ----  ----            -------
  Normal   SuccessfulCreate      12m   job-controller  Created pod: nightly-export-2941-x7k2p
  Warning  BackoffLimitExceeded  1m    job-controller  Job has reached the specified backoff limit
"""
    result = run(K8S, "k8s.describe_job", describe)
    assert codes(result) == {"job_backoff_limit"} and result.facts["job_pods"] == ["nightly-export-2941-x7k2p"]


def test_warning_events_across_namespaces_are_grouped() -> None:
    events = """NAMESPACE   LAST SEEN   TYPE      REASON      OBJECT               MESSAGE
shop        2m          Warning   BackOff     pod/cart-1           Back-off restarting failed container
shop        1m          Warning   BackOff     pod/cart-2           Back-off restarting failed container
default     30s         Warning   Evicted     pod/report-9         The node was low on resource: memory.
"""
    result = run(K8S, "k8s.events_all", events)
    # The grouped count, then what the catalogue makes of each warning: known (with its count) or unrecognised.
    assert "warning_events" in codes(result) and codes(result) <= {"warning_events", "log_signature", "log_unrecognised"}
    assert "BackOff (2)" in text(result) and "low on resource" in text(result)
    known = {f.data["signature"]: f.data["count"] for f in result.findings if f.code == "log_signature"}
    assert known.get("k8s-evicted-memory") == 1
    assert "2 × \"Back-off restarting failed container" in text(result) or 2 in known.values()
