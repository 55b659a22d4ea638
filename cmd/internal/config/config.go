// Package config reads the daemon's settings from the environment that the
// ExtensionServiceConfig passes in. Every variable is parsed and validated
// here, once, so that a typo or an out-of-range value stops the daemon before
// it touches the node, with a message naming the variable and the value.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/credentials"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Prefix is the common prefix of the daemon's own variables.
const Prefix = "TALOS_AUTO_BOOTSTRAP_"

// Config is the validated configuration.
type Config struct {
	LogLevel zerolog.Level

	ScanInterval          time.Duration
	FollowerCheckInterval time.Duration
	QuorumNodes           int
	LeaderOrder           election.LeaderOrder
	PreBootstrapDelay     time.Duration
	MaxBackoff            time.Duration
	ScanTimeout           time.Duration
	ScanConcurrency       int
	MaxScanHosts          int
	DetectGrace           time.Duration

	// Discovery lists the sources (TALOS_AUTO_BOOTSTRAP_DISCOVERY); nil
	// means the default: members when the node's config enables Talos
	// cluster discovery, plus PEERS when set, else the sweep.
	Discovery []discovery.SourceName

	// Discovery overrides.
	Interface string
	ScanCIDR  netip.Prefix // zero when unset
	Peers     []netip.Addr // nil when unset

	// Talosconfig is the path of an operator-provided talosconfig; when set
	// the STATE partition is never mounted.
	Talosconfig string

	// BreakLock names a lock the operator has verified to be dead.
	BreakLock *LockRef

	// Paths, overridable so that the demo and tests can run without root.
	// Talos mounts them at the defaults (see deploy/).
	SecretsDir   string
	ProcDir      string
	StatusDir    string
	RunDir       string
	StateDevices []string
	// NodeIP overrides the local address (the demo puts several nodes on lo).
	NodeIP netip.Addr
	// APIDPort is 50000 on Talos; only tests change it.
	APIDPort int
}

// Defaults are the upstream README's defaults (../shared/SEED.md's source), plus ours for the
// variables it lacks. LEADER_ORDER defaults to address: the node the Talos
// Cluster API control-plane provider bootstraps, so that the daemon running
// beside it picks the same one.
func Defaults() Config {
	return Config{
		LogLevel:              zerolog.InfoLevel,
		ScanInterval:          30 * time.Second,
		FollowerCheckInterval: 15 * time.Second,
		QuorumNodes:           1,
		LeaderOrder:           election.OrderAddress,
		PreBootstrapDelay:     10 * time.Second,
		MaxBackoff:            2 * time.Minute,
		ScanTimeout:           discovery.DefaultScanTimeout,
		ScanConcurrency:       discovery.DefaultScanConcurrency,
		MaxScanHosts:          discovery.DefaultMaxScanHosts,
		DetectGrace:           credentials.DefaultDetectGrace,
		SecretsDir:            credentials.DefaultSecretsDir,
		ProcDir:               discovery.DefaultProcDir,
		StatusDir:             statusfile.DefaultDir,
		RunDir:                credentials.DefaultMountBase,
		StateDevices:          credentials.DefaultStateDevices(),
		APIDPort:              transport.APIDPort,
	}
}

// InvalidError is a configuration error: the daemon exits with code 2.
type InvalidError struct {
	Variable string
	Value    string
	Reason   string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Variable, e.Value, e.Reason)
}

// IsInvalid tells whether err is (or wraps) a configuration error.
func IsInvalid(err error) bool {
	var ie *InvalidError

	return errors.As(err, &ie)
}

type setting struct {
	name  string
	parse func(cfg *Config, value string) error
}

func duration(min time.Duration, field func(*Config) *time.Duration) func(*Config, string) error {
	return func(cfg *Config, value string) error {
		d, err := time.ParseDuration(value)
		if err != nil {
			return errors.New("not a duration (examples: 500ms, 30s, 2m)")
		}

		if d < min {
			return fmt.Errorf("must be at least %s", min)
		}

		*field(cfg) = d

		return nil
	}
}

func integer(min, max int, field func(*Config) *int) func(*Config, string) error {
	return func(cfg *Config, value string) error {
		n, err := strconv.Atoi(value)
		if err != nil {
			return errors.New("not a whole number")
		}

		if n < min || n > max {
			return fmt.Errorf("must be between %d and %d", min, max)
		}

		*field(cfg) = n

		return nil
	}
}

func path(field func(*Config) *string) func(*Config, string) error {
	return func(cfg *Config, value string) error {
		if !strings.HasPrefix(value, "/") {
			return errors.New("must be an absolute path")
		}

		*field(cfg) = value

		return nil
	}
}

var settings = []setting{
	{"LOG_LEVEL", func(cfg *Config, value string) error {
		lvl, err := zerolog.ParseLevel(strings.ToLower(value))
		if err != nil || value == "" {
			return errors.New("must be one of debug, info, warn, error")
		}

		cfg.LogLevel = lvl

		return nil
	}},
	{Prefix + "SCAN_INTERVAL", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.ScanInterval })},
	{Prefix + "FOLLOWER_CHECK_INTERVAL", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.FollowerCheckInterval })},
	{Prefix + "QUORUM_NODES", integer(1, 99, func(c *Config) *int { return &c.QuorumNodes })},
	{Prefix + "LEADER_ORDER", func(cfg *Config, value string) error {
		order, err := election.ParseLeaderOrder(value)
		if err != nil {
			return err
		}

		cfg.LeaderOrder = order

		return nil
	}},
	{Prefix + "PRE_BOOTSTRAP_DELAY", duration(0, func(c *Config) *time.Duration { return &c.PreBootstrapDelay })},
	{Prefix + "MAX_BACKOFF", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.MaxBackoff })},
	{Prefix + "SCAN_TIMEOUT", duration(10*time.Millisecond, func(c *Config) *time.Duration { return &c.ScanTimeout })},
	{Prefix + "SCAN_CONCURRENCY", integer(1, 4096, func(c *Config) *int { return &c.ScanConcurrency })},
	{Prefix + "MAX_SCAN_HOSTS", integer(1, 1<<24, func(c *Config) *int { return &c.MaxScanHosts })},
	{Prefix + "DETECT_GRACE", duration(100*time.Millisecond, func(c *Config) *time.Duration { return &c.DetectGrace })},
	{Prefix + "INTERFACE", func(cfg *Config, value string) error {
		if value == "" || strings.ContainsAny(value, "/ \t") || len(value) > 15 {
			return errors.New("not an interface name")
		}

		cfg.Interface = value

		return nil
	}},
	{Prefix + "DISCOVERY", func(cfg *Config, value string) error {
		sources, err := discovery.ParseSources(value)
		if err != nil {
			return err
		}

		cfg.Discovery = sources

		return nil
	}},
	{Prefix + "SCAN_CIDR", func(cfg *Config, value string) error {
		p, err := netip.ParsePrefix(value)
		if err != nil || p.Addr().Zone() != "" {
			return errors.New("not a CIDR (examples: 10.0.0.0/24, fd00:10::/120)")
		}

		cfg.ScanCIDR = p.Masked()

		return nil
	}},
	{Prefix + "PEERS", func(cfg *Config, value string) error {
		peers, err := discovery.ParsePeers(value)
		if err != nil {
			return err
		}

		if len(peers) == 0 {
			return errors.New("no addresses (example: 10.0.0.5,10.0.0.6)")
		}

		cfg.Peers = peers

		return nil
	}},
	{Prefix + "TALOSCONFIG", path(func(c *Config) *string { return &c.Talosconfig })},
	{Prefix + "BREAK_LOCK", func(cfg *Config, value string) error {
		ref, err := ParseLockRef(value)
		if err != nil {
			return err
		}

		cfg.BreakLock = ref

		return nil
	}},
	{Prefix + "SECRETS_DIR", path(func(c *Config) *string { return &c.SecretsDir })},
	{Prefix + "PROC_DIR", path(func(c *Config) *string { return &c.ProcDir })},
	{Prefix + "STATUS_DIR", path(func(c *Config) *string { return &c.StatusDir })},
	{Prefix + "RUN_DIR", path(func(c *Config) *string { return &c.RunDir })},
	{Prefix + "STATE_DEVICES", func(cfg *Config, value string) error {
		var devs []string

		for _, d := range strings.Split(value, ",") {
			d = strings.TrimSpace(d)
			if !strings.HasPrefix(d, "/") {
				return fmt.Errorf("%q is not an absolute path", d)
			}

			devs = append(devs, d)
		}

		cfg.StateDevices = devs

		return nil
	}},
	{Prefix + "NODE_IP", func(cfg *Config, value string) error {
		a, err := netip.ParseAddr(value)
		if err != nil || !a.Is4() {
			return errors.New("not an IPv4 address")
		}

		cfg.NodeIP = a

		return nil
	}},
	{Prefix + "APID_PORT", integer(1, 65535, func(c *Config) *int { return &c.APIDPort })},
}

// LockRef names one leader's intent: the lock an operator breaks.
type LockRef struct {
	IP     netip.Addr
	BootID string
	Intent uint64
}

// String is the form the status file and the variable use.
func (r LockRef) String() string { return fmt.Sprintf("%s/%s/%d", r.IP, r.BootID, r.Intent) }

// ParseLockRef parses the escape hatch's lock name: "IP/BOOT_ID/INTENT", as
// the status file shows it.
func ParseLockRef(value string) (*LockRef, error) {
	parts := strings.Split(value, "/")
	if len(parts) != 3 {
		return nil, errors.New("must be LEADER_IP/LEADER_BOOT_ID/INTENT (see docs/operations.md, Breaking a lock)")
	}

	ip, err := netip.ParseAddr(parts[0])
	if err != nil {
		return nil, fmt.Errorf("leader %q is not an IP address", parts[0])
	}

	if len(parts[1]) != 36 {
		return nil, fmt.Errorf("boot id %q is not a UUID", parts[1])
	}

	n, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("intent %q is not a positive number", parts[2])
	}

	return &LockRef{IP: ip, BootID: parts[1], Intent: n}, nil
}

// Load reads the configuration from environ (os.Environ() form). It returns
// the config and an *InvalidError for the first bad value or unknown
// TALOS_AUTO_BOOTSTRAP_* variable.
func Load(environ []string) (Config, error) {
	cfg := Defaults()
	env := map[string]string{}

	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			env[k] = v
		}
	}

	known := map[string]bool{}

	for _, s := range settings {
		known[s.name] = true
	}

	// Unknown names first: a misspelt QUORUM_NODES would otherwise leave
	// the default quorum of 1, and every node would found a cluster alone.
	// Failing closed costs an operator one restart after the fix; a
	// variable ignored with a warning can cost a second cluster.
	var unknown []string

	for k := range env {
		if strings.HasPrefix(k, Prefix) && !known[k] {
			unknown = append(unknown, k)
		}
	}

	if len(unknown) > 0 {
		sort.Strings(unknown)
		k := unknown[0]

		return cfg, &InvalidError{Variable: k, Value: env[k], Reason: unknownReason(k)}
	}

	for _, s := range settings {
		value, ok := env[s.name]
		if !ok {
			continue
		}

		value = strings.TrimSpace(value)
		if err := s.parse(&cfg, value); err != nil {
			return cfg, &InvalidError{Variable: s.name, Value: value, Reason: err.Error()}
		}
	}

	if cfg.ScanCIDR.IsValid() && cfg.Peers != nil {
		return cfg, &InvalidError{Variable: Prefix + "PEERS", Value: env[Prefix+"PEERS"],
			Reason: "set either PEERS or SCAN_CIDR, not both"}
	}

	if err := checkSources(cfg, env[Prefix+"DISCOVERY"]); err != nil {
		return cfg, err
	}

	return cfg, nil
}

// unknownReason names the known variable closest to name, when one is
// close enough to be what was meant.
func unknownReason(name string) string {
	const reason = "not a variable of this daemon (the README lists them)"

	best, bestDist := "", 5 // farther than 4 edits is no longer a typo

	for _, s := range settings {
		if strings.HasPrefix(s.name, name) || strings.HasPrefix(name, s.name) {
			// A name cut short or run on (QUORUM for QUORUM_NODES).
			return reason + "; did you mean " + s.name + "?"
		}

		if d := editDistance(name, s.name); d < bestDist {
			best, bestDist = s.name, d
		}
	}

	if best != "" {
		return reason + "; did you mean " + best + "?"
	}

	return reason
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)

	for j := range prev {
		prev[j] = j
	}

	for i := 1; i <= len(a); i++ {
		cur[0] = i

		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}

			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}

		prev, cur = cur, prev
	}

	return prev[len(b)]
}

// checkSources refuses a DISCOVERY list that leaves PEERS or SCAN_CIDR
// unused, or names peers without PEERS: a setting that silently does
// nothing is a misread configuration.
func checkSources(cfg Config, value string) error {
	if cfg.Discovery == nil {
		return nil
	}

	invalid := func(reason string) error {
		return &InvalidError{Variable: Prefix + "DISCOVERY", Value: value, Reason: reason}
	}

	has := func(s discovery.SourceName) bool { return slices.Contains(cfg.Discovery, s) }

	switch {
	case has(discovery.SourcePeers) && cfg.Peers == nil:
		return invalid("lists peers, but " + Prefix + "PEERS is not set")
	case !has(discovery.SourcePeers) && cfg.Peers != nil:
		return invalid("does not list peers, so " + Prefix + "PEERS would be ignored")
	case !has(discovery.SourceScan) && cfg.ScanCIDR.IsValid():
		return invalid("does not list scan, so " + Prefix + "SCAN_CIDR would be ignored")
	}

	return nil
}

// Sources is the effective source list: Discovery, or the default.
func (c Config) Sources() []discovery.SourceName {
	if c.Discovery != nil {
		return c.Discovery
	}

	if c.Peers != nil {
		return []discovery.SourceName{discovery.SourceMembers, discovery.SourcePeers}
	}

	return []discovery.SourceName{discovery.SourceMembers, discovery.SourceScan}
}

// FromEnvironment is Load(os.Environ()).
func FromEnvironment() (Config, error) { return Load(os.Environ()) }
