// Command fakeapid serves one fake Talos node's apid (see transport/fakeapid)
// for end-to-end tests and the demo, logging every call it serves as a JSON
// line on stdout.
//
//	fakeapid gen-ca CERT KEY
//	fakeapid --listen 198.18.0.2:50000,127.0.0.1:50000 --ca-cert ca.crt --ca-key ca.key \
//	    --machine-type controlplane --registry-dir /tmp/etcd-world [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fakeapid:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "gen-ca" {
		return genCA(args[1:])
	}

	opts, err := parseFlags(args)
	if err != nil {
		return err
	}

	pki, err := fakeapid.LoadPKI(opts.caCert, opts.caKey)
	if err != nil {
		return err
	}

	reg := fakeapid.NewRegistry()

	if opts.registryDir != "" {
		reg, err = fakeapid.OpenRegistry(opts.registryDir)
		if err != nil {
			return err
		}

		defer reg.Close() //nolint:errcheck
	}

	logger := zerolog.New(stdout).With().Timestamp().Logger()

	srv, err := fakeapid.Start(fakeapid.Config{
		PKI:      pki,
		Registry: reg,
		Listen:   opts.listen,
		OnCall: func(c fakeapid.Call) {
			logger.Info().Str("node", c.Node).Str("method", c.Method).Str("code", c.Code).
				Str("error", c.Error).Strs("roles", c.Roles).Time("at", c.Time).Msg("call")
		},
	}, opts.node)
	if err != nil {
		return err
	}
	defer srv.Close() //nolint:errcheck

	addrs := make([]string, 0, len(srv.Addrs()))
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}

	node := srv.Node()

	select {
	case <-ctx.Done():
		return nil
	case <-srv.Listening():
	}

	logger.Info().Str("node", node.IP.String()).Strs("listen", addrs).Str("hostname", node.Hostname).
		Str("machineType", string(node.MachineType)).Str("talosVersion", node.TalosVersion).
		Str("bootID", node.BootID).Int64("bootTime", node.BootTime.Unix()).
		Str("filesRoot", node.FilesRoot).Str("nodeID", node.NodeID).
		Strs("discoveryAddrs", addrStrings(node.DiscoveryAddrs)).Bool("discoveryDisabled", node.DiscoveryDisabled).
		Msg("listening")

	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if err := srv.Err(); err != nil {
				return err
			}
		}
	}
}

func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}

	return out
}

func genCA(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: fakeapid gen-ca CERT KEY")
	}

	pki, err := fakeapid.NewPKI()
	if err != nil {
		return err
	}

	return pki.WritePEM(args[0], args[1])
}

type options struct {
	listen      []string
	caCert      string
	caKey       string
	registryDir string
	node        fakeapid.Node
}

//nolint:funlen
func parseFlags(args []string) (options, error) {
	var (
		o                                         options
		ip, listen, machineType, bootTime, faults string
		memberListError, discoveryAddrs           string
	)

	fs := flag.NewFlagSet("fakeapid", flag.ContinueOnError)
	fs.StringVar(&listen, "listen", "", "comma-separated listen addresses, e.g. 198.18.0.2:50000,127.0.0.1:50000 (required)")
	fs.StringVar(&ip, "ip", "", "node IP (default: the first non-loopback listen address, else the first)")
	fs.StringVar(&o.caCert, "ca-cert", "", "cluster OS CA certificate, PEM (required)")
	fs.StringVar(&o.caKey, "ca-key", "", "cluster OS CA key, PEM (required)")
	fs.StringVar(&o.registryDir, "registry-dir", "", "directory of the etcd registry shared by fake nodes (default: private, in memory)")
	fs.StringVar(&o.node.Hostname, "hostname", "", "etcd member name (default talos-<ip>)")
	fs.StringVar(&machineType, "machine-type", "controlplane", "controlplane, init or worker")
	fs.StringVar(&o.node.TalosVersion, "talos-version", fakeapid.DefaultTalosVersion, "Talos version answers follow (v1.13 vs <= v1.12)")
	fs.StringVar(&bootTime, "boot-time", "", "kernel boot time, RFC 3339 or Unix seconds (default: a minute before start)")
	fs.StringVar(&o.node.BootID, "boot-id", "", "boot_id UUID (default random)")
	fs.StringVar(&o.node.FilesRoot, "files-root", "", "host filesystem root served by Read and List (default: temporary)")
	fs.DurationVar(&o.node.StartDelay, "start-delay", 0, "open the listeners this late")
	fs.DurationVar(&o.node.NotReadyFor, "not-ready-for", 0, "Bootstrap answers \"bootstrap is not available yet\" this long")
	fs.IntVar(&o.node.NotReadyBootstraps, "not-ready-bootstraps", 0, "the first N Bootstrap calls answer \"bootstrap is not available yet\"")
	fs.BoolVar(&o.node.TimeUnsynced, "time-unsynced", false, "time never syncs")
	fs.DurationVar(&o.node.TimeSyncedAfter, "time-synced-after", 0, "time syncs this long after start")
	fs.IntVar(&o.node.TimeSyncedAfterCalls, "time-synced-after-calls", 0, "time syncs after N served calls")
	fs.DurationVar(&o.node.TimeSyncWait, "time-sync-wait", fakeapid.TalosTimeSyncWait, "how long Bootstrap waits for time sync")
	fs.StringVar(&faults, "bootstrap-faults", "", "comma-separated faults for successive Bootstrap calls: none, time-not-synced, hang, lost-reply, unavailable")
	fs.DurationVar(&o.node.DataFillDelay, "data-fill-delay", 0, "after Bootstrap, /var/lib/etcd fills this late")
	fs.DurationVar(&o.node.InitFoundAfter, "init-found-after", 0,
		"with --machine-type init: etcd founds the cluster by itself this long after the start (its image pull), with no Bootstrap call")
	fs.DurationVar(&o.node.HealthyDelay, "healthy-delay", 0, "etcd turns healthy this long after its data dir fills")
	fs.DurationVar(&o.node.JoinDelay, "join-delay", 0, "join an existing cluster this long after its founder is healthy")
	fs.BoolVar(&o.node.COSIUnimplemented, "cosi-unimplemented", false, "answer COSI with Unimplemented")
	fs.StringVar(&o.node.SideroLinkAPI, "siderolink-api", "", "the node is connected to Omni: COSI serves SiderolinkConfigs with this API endpoint, e.g. https://omni.example.com?jointoken=...")
	fs.BoolVar(&o.node.DiscoveryDisabled, "discovery-disabled", false, "the machine config disables cluster discovery: DiscoveryConfigs says so, Affiliates and Members are empty")
	fs.StringVar(&discoveryAddrs, "discovery-addrs", "", "comma-separated addresses advertised in cluster discovery, e.g. 198.18.0.2,fd00:198:18::2 (default: the node IP and the non-loopback listen addresses)")
	fs.DurationVar(&o.node.DiscoveryTTL, "discovery-ttl", 0, "keep stopped nodes in the Affiliates and Members this node lists this long (Talos: about 30m)")
	fs.StringVar(&memberListError, "etcd-member-list-error", "", "CODE:message answered by EtcdMemberList while etcd does not run (default: hang until the caller's deadline)")

	if err := fs.Parse(args); err != nil {
		return o, err
	}

	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if listen == "" || o.caCert == "" || o.caKey == "" {
		return o, errors.New("--listen, --ca-cert and --ca-key are required")
	}

	o.listen = strings.Split(listen, ",")

	var err error

	if o.node.IP, err = nodeIP(ip, o.listen); err != nil {
		return o, err
	}

	o.node.MachineType = transport.MachineType(machineType)

	if bootTime != "" {
		if o.node.BootTime, err = parseTime(bootTime); err != nil {
			return o, fmt.Errorf("--boot-time: %w", err)
		}
	}

	if faults != "" {
		for _, f := range strings.Split(faults, ",") {
			fault, err := fakeapid.ParseFault(strings.TrimSpace(f))
			if err != nil {
				return o, fmt.Errorf("--bootstrap-faults: %w", err)
			}

			o.node.BootstrapFaults = append(o.node.BootstrapFaults, fault)
		}
	}

	if discoveryAddrs != "" {
		for _, a := range strings.Split(discoveryAddrs, ",") {
			addr, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				return o, fmt.Errorf("--discovery-addrs: %w", err)
			}

			o.node.DiscoveryAddrs = append(o.node.DiscoveryAddrs, addr)
		}
	}

	if memberListError != "" {
		if o.node.EtcdMemberListError, err = parseStatus(memberListError); err != nil {
			return o, fmt.Errorf("--etcd-member-list-error: %w", err)
		}
	}

	return o, nil
}

func nodeIP(flagIP string, listen []string) (netip.Addr, error) {
	if flagIP != "" {
		ip, err := netip.ParseAddr(flagIP)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("--ip: %w", err)
		}

		return ip, nil
	}

	var first netip.Addr

	for _, l := range listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("--listen %q: %w", l, err)
		}

		if !first.IsValid() {
			first = ap.Addr()
		}

		if !ap.Addr().IsLoopback() {
			return ap.Addr(), nil
		}
	}

	return first, nil
}

func parseTime(s string) (time.Time, error) {
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(secs, 0), nil
	}

	return time.Parse(time.RFC3339, s)
}

// parseStatus reads "Unavailable:etcdserver: no leader".
func parseStatus(s string) (error, error) { //nolint:revive // an error value is the result
	name, msg, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("%q: want CODE:message", s)
	}

	for c := codes.OK + 1; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(c.String(), strings.TrimSpace(name)) {
			return status.Error(c, msg), nil
		}
	}

	return nil, fmt.Errorf("%q: unknown gRPC code %q", s, name)
}
