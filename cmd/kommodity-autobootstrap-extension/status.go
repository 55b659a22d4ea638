package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/statusreport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/credentials"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Exit codes of the status command.
const (
	statusOK      = 0 // bootstrapped, progressing on its own, or stood down (Omni bootstraps)
	statusError   = 1
	statusBlocked = 3
	statusSplit   = 4 // two etcd clusters: what the daemon exists to prevent
)

// memberListTimeout bounds the member-list read of a node whose etcd runs.
const memberListTimeout = 5 * time.Second

// resendAfter is the daemon's EtcdWait: how long a sent Bootstrap is given
// to show etcd data. It only shapes the wording of a bootstrapping node's
// next step.
const resendAfter = states.DefaultEtcdWait

const statusUsage = `Usage: kommodity-autobootstrap-extension status [--talosconfig FILE] [--nodes IP,IP,...] [-o text|json]

Reads every control-plane node's status file, boot id and signs of etcd
through apid, prints one row per node, and runs the election's rules from
every node's point of view to say who leads and what blocks it.

Exit codes: 0 bootstrapped, progressing, or stood down (Omni manages the
cluster and bootstraps it), 3 blocked, 4 split (the nodes' etcd member
lists show separate etcd clusters), 1 error.

`

// errReadDenied: apid refused Read, which needs os:admin.
var errReadDenied = errors.New("permission denied on Read")

// statusCommand runs `status` with args (after the word "status"); getenv
// reads TALOSCONFIG and HOME.
func statusCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, statusUsage)
		fs.PrintDefaults()
	}

	talosconfig := fs.String("talosconfig", "", "talosconfig file (default $TALOSCONFIG, then ~/.talos/config)")
	nodesFlag := fs.String("nodes", "", "comma-separated node IPs (default: the talosconfig context's nodes, then its endpoints)")
	port := fs.Uint("port", transport.APIDPort, "apid port")
	output := fs.String("o", "text", "output format: text or json")
	timeout := fs.Duration("timeout", 30*time.Second, "how long reading all nodes may take")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return statusOK
		}

		return statusError
	}

	fail := func(err error) int {
		fmt.Fprintf(stderr, "kommodity-autobootstrap-extension status: %v\n", err)

		return statusError
	}

	if *output != "text" && *output != "json" {
		return fail(fmt.Errorf("-o %q: want text or json", *output))
	}

	if fs.NArg() > 0 || *port == 0 || *port > 65535 {
		fs.Usage()

		return statusError
	}

	path, err := talosconfigPath(*talosconfig, getenv)
	if err != nil {
		return fail(err)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	id, cfgNodes, err := loadTalosconfig(ctx, path)
	if err != nil {
		return fail(err)
	}

	spec := cfgNodes
	if *nodesFlag != "" {
		spec = strings.Split(*nodesFlag, ",")
	}

	addrs, err := parseNodes(spec)
	if err != nil {
		return fail(err)
	}

	facts, err := collect(ctx, transport.NewDialer(id), addrs, uint16(*port)) //nolint:gosec // checked above
	if errors.Is(err, errReadDenied) {
		return fail(fmt.Errorf("apid refused Read: the talosconfig's certificate has role %s; reading status files needs %s", rolesOf(id), role.Admin))
	}

	if err != nil {
		return fail(err)
	}

	defaults := config.Defaults()
	report := statusreport.Build(facts, statusreport.Settings{
		Now:               time.Now(),
		PreBootstrapDelay: defaults.PreBootstrapDelay,
		ResendAfter:       resendAfter,
	})

	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		err = statusreport.WriteText(stdout, report)
	}

	if err != nil {
		return fail(fmt.Errorf("print report: %w", err))
	}

	switch report.Verdict.State {
	case statusreport.Blocked:
		return statusBlocked
	case statusreport.Split:
		return statusSplit
	case statusreport.Unknown:
		return statusError
	}

	return statusOK
}

// talosconfigPath: the flag, else $TALOSCONFIG, else ~/.talos/config.
func talosconfigPath(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}

	if p := getenv("TALOSCONFIG"); p != "" {
		return p, nil
	}

	home := getenv("HOME")
	if home == "" {
		return "", errors.New("no --talosconfig, no $TALOSCONFIG and no $HOME to find ~/.talos/config")
	}

	return filepath.Join(home, ".talos", "config"), nil
}

// loadTalosconfig returns the identity of the talosconfig's current context
// (loaded and checked by credentials, as the daemon loads it) and that
// context's nodes, else its endpoints.
func loadTalosconfig(ctx context.Context, path string) (transport.Identity, []string, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator's file
	if err != nil {
		return nil, nil, fmt.Errorf("read talosconfig: %w", err)
	}

	cfg, err := clientconfig.FromBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("talosconfig %s: parse: %w", path, err)
	}

	var nodes []string

	var roles []string

	if c := cfg.Contexts[cfg.Context]; c != nil {
		nodes = c.Nodes
		if len(nodes) == 0 {
			nodes = c.Endpoints
		}

		roles = certificateRoles(c.Crt)
	}

	_, id, err := credentials.TalosconfigSource{Path: path}.Load(ctx)
	if err != nil {
		if roles != nil && !slices.Contains(roles, string(role.Admin)) {
			// Load's own message speaks of Bootstrap, the daemon's need.
			return nil, nil, fmt.Errorf("the talosconfig's certificate has role %s; reading status files needs %s",
				strings.Join(roles, ","), role.Admin)
		}

		return nil, nil, fmt.Errorf("load talosconfig: %w", err)
	}

	return id, nodes, nil
}

// certificateRoles reads the roles (Subject.O) of a talosconfig's crt, nil
// when it cannot be read (Load then says why).
func certificateRoles(crt string) []string {
	der, err := base64.StdEncoding.DecodeString(crt)
	if err != nil {
		return nil
	}

	block, _ := pem.Decode(der)
	if block == nil {
		return nil
	}

	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}

	return append([]string{}, cert.Subject.Organization...)
}

// rolesOf names the roles of an identity's client certificate.
func rolesOf(id transport.Identity) string {
	cert, err := id.ClientCertificate()
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return "unknown"
	}

	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "unknown"
		}
	}

	if len(leaf.Subject.Organization) == 0 {
		return "none"
	}

	return strings.Join(leaf.Subject.Organization, ",")
}

// parseNodes accepts IPs, with or without a port (endpoints carry one; the
// --port flag applies), and drops repeats.
func parseNodes(spec []string) ([]netip.Addr, error) {
	var out []netip.Addr

	for _, s := range spec {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}

		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}

		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil {
			return nil, fmt.Errorf("node %q is not an IP address (the status command dials nodes by address, as the daemon does)", s)
		}

		if !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}

	if len(out) == 0 {
		return nil, errors.New("no nodes: give --nodes, or set nodes or endpoints in the talosconfig's context")
	}

	return out, nil
}

// collect reads every node at once. It fails only when a node refuses
// Read for lack of a role (errReadDenied): every other failure is that
// node's row.
func collect(ctx context.Context, dialer transport.Dialer, addrs []netip.Addr, port uint16) ([]statusreport.Facts, error) {
	facts := make([]statusreport.Facts, len(addrs))
	errs := make([]error, len(addrs))

	var wg sync.WaitGroup

	for i, a := range addrs {
		wg.Add(1)

		go func() {
			defer wg.Done()

			facts[i], errs[i] = readNode(ctx, dialer, netip.AddrPortFrom(a, port))
		}()
	}

	wg.Wait()

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	return facts, nil
}

func readNode(ctx context.Context, dialer transport.Dialer, ap netip.AddrPort) (statusreport.Facts, error) {
	f := statusreport.Facts{Addr: ap.Addr()}

	node, err := dialer.Dial(ctx, ap)
	if err != nil {
		if foreign(err) {
			f.Foreign = err.Error()
		} else {
			f.Unreachable = err.Error()
		}

		return f, nil
	}
	defer node.Close() //nolint:errcheck // read-only

	bootID, err := node.BootID(ctx)
	if err != nil {
		if denied(err) {
			return f, fmt.Errorf("%s: %w (%w)", ap.Addr(), errReadDenied, err)
		}

		f.Unreachable = err.Error()

		return f, nil
	}

	bootTime, err := node.BootTime(ctx)
	if err != nil {
		f.Unreachable = err.Error()

		return f, nil
	}

	f.BootID, f.BootTime = bootID, bootTime

	if mt, err := node.MachineType(ctx); err == nil {
		f.MachineType = mt
	}

	st, state, err := transport.ReadStatus(ctx, node, statusfile.Path, bootID)
	if denied(err) {
		return f, fmt.Errorf("%s: %w (%w)", ap.Addr(), errReadDenied, err)
	}

	f.Status, f.StatusState = st, state
	if err != nil {
		f.StatusErr = err.Error()
	}

	if state == election.StatusStale {
		f.EarlierStatus = earlierStatus(ctx, node)
	}

	signs, svc := transport.ProbeEtcdSigns(ctx, node)
	f.Signs, f.EtcdHealthy = signs, svc.Running()

	if signs.EtcdRunning == election.Yes {
		f.EtcdMembers, f.EtcdMembersErr = etcdMembers(ctx, node)
	}

	return f, nil
}

// earlierStatus is the status file an earlier boot wrote, which ReadStatus
// does not return (it speaks for that boot only); the report quotes it to
// say what the machine last published. nil when it cannot be read now.
func earlierStatus(ctx context.Context, node transport.Node) *election.Status {
	data, err := node.ReadFile(ctx, statusfile.Path, transport.StatusLimit)
	if err != nil {
		return nil
	}

	st, err := election.ParseStatus(data)
	if err != nil {
		return nil
	}

	return st
}

// etcdMembers reads the member list of a node whose etcd runs, with the
// member ids that tell one etcd cluster from another.
func etcdMembers(ctx context.Context, node transport.Node) ([]statusreport.EtcdMember, string) {
	lister, ok := node.(transport.EtcdMemberLister)
	if !ok {
		return nil, "this apid client cannot list etcd members"
	}

	ctx, cancel := context.WithTimeout(ctx, memberListTimeout)
	defer cancel()

	list, err := lister.EtcdMemberList(ctx)
	if err != nil {
		return nil, err.Error()
	}

	out := make([]statusreport.EtcdMember, 0, len(list))
	for _, m := range list {
		out = append(out, statusreport.EtcdMember{ID: m.ID, Name: m.Hostname})
	}

	return out, ""
}

func denied(err error) bool { return err != nil && status.Code(err) == codes.PermissionDenied }

// foreign: the node answered TLS but is not of this cluster (its
// certificate does not chain to the talosconfig's CA), or the handshake
// failed otherwise (it refused our certificate).
func foreign(err error) bool {
	if transport.IsCertificateRejected(err) {
		return true
	}

	msg := err.Error()

	return strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "authentication handshake failed")
}
