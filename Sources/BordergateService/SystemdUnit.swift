import Foundation

/// The systemd unit Bordergate runs as (`contrib/bordergate.service` is this text for
/// /usr/local/bin/bordergate; a unit test keeps the two equal), and sd_notify.
///
/// What the options are for: the daemon loads BPF programs (CAP_BPF, CAP_PERFMON for the
/// process-table tracepoints), attaches them to cgroups and marks the proxy's sockets
/// (CAP_NET_ADMIN), binds port 738 (CAP_NET_BIND_SERVICE), reads other users' `/proc/PID/exe` to
/// name processes (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH), raises its open-file limit
/// (CAP_SYS_RESOURCE), and keeps CAP_SYS_ADMIN for kernels before 5.8 (no CAP_BPF) and for
/// mounting bpffs when it is missing. The file system is read-only but for its state, its control
/// socket's directory and bpffs, where the guards are pinned. `/sys` and the cgroup tree stay as
/// they are (ProtectKernelTunables and ProtectControlGroups would make bpffs read-only and hide
/// the cgroups it guards). No system-call filter: bpf(2), perf_event_open(2) and mount(2) are
/// what it is for.
public enum SystemdUnit {
    public static let name = "bordergate.service"
    public static let defaultDirectory = "/etc/systemd/system"

    public static func text(binary: String) -> String {
        """
        # Bordergate as a systemd service: `bordergate install-service` writes this unit (with the
        # path of the binary that ran it) to /etc/systemd/system; `bordergate uninstall-service` removes it.
        [Unit]
        Description=Bordergate: keep guarded tools' network traffic inside the places it may go
        After=network-online.target local-fs.target
        Wants=network-online.target

        [Service]
        # READY=1 once the proxy, the kernel guards and the control socket are up
        Type=notify
        NotifyAccess=main
        ExecStart=\(binary) daemon
        # a reload re-reads the config and the region tables; a failed one keeps what is in force
        ExecReload=/bin/kill -HUP $MAINPID
        # the guards stay pinned in bpffs while it is down: guarded connects are refused until it returns
        Restart=on-failure
        RestartSec=2s
        TimeoutStopSec=30s
        StateDirectory=bordergate
        StateDirectoryMode=0750
        RuntimeDirectory=bordergate
        RuntimeDirectoryMode=0755
        RuntimeDirectoryPreserve=yes
        LimitNOFILE=1048576
        # BPF maps are charged to RLIMIT_MEMLOCK on kernels before 5.11
        LimitMEMLOCK=infinity

        CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_SYS_RESOURCE CAP_CHOWN CAP_FOWNER
        NoNewPrivileges=yes
        ProtectSystem=strict
        ReadWritePaths=/sys/fs/bpf /var/lib/bordergate /run/bordergate
        ProtectHome=read-only
        PrivateTmp=yes
        PrivateDevices=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectClock=yes
        ProtectHostname=yes
        RestrictNamespaces=yes
        RestrictRealtime=yes
        RestrictSUIDSGID=yes
        LockPersonality=yes
        MemoryDenyWriteExecute=yes
        RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
        SystemCallArchitectures=native
        UMask=0027

        [Install]
        WantedBy=multi-user.target

        """
    }

    /// Tells systemd (Type=notify) how the daemon is: `READY=1`, `STOPPING=1`, `STATUS=…`.
    /// Nothing when not started by systemd.
    public static func notify(_ state: String) {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        var bytes = Array(path.utf8)
        if abstract { bytes.insert(0, at: 0) } // an abstract socket's name starts with NUL
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) }
            }
        }
    }
}
