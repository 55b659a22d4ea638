package credentials

import (
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// TalosconfigEnv names the environment variable that selects the talosconfig
// source (a file mounted through ExtensionServiceConfig configFiles).
const TalosconfigEnv = "TALOS_AUTO_BOOTSTRAP_TALOSCONFIG"

// DefaultExpiryWarning: a talosconfig certificate expiring sooner than this
// is reported in Material.Warnings.
const DefaultExpiryWarning = 7 * 24 * time.Hour

const maxTalosconfigSize = 1 << 20

// TalosconfigSource takes the client certificate and cluster CA from the
// current context of a talosconfig, for operators who do not want the
// extension to read the machine CA key. STATE is never mounted. The
// certificate cannot be renewed: once it expires, ClientCertificate fails.
type TalosconfigSource struct {
	Path string
	// Clock defaults to the real clock.
	Clock clockwork.Clock
	// ExpiryWarning defaults to DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// Log receives warnings (certificate expiring soon, not chaining to the
	// talosconfig's CA). The zero value discards.
	Log zerolog.Logger
}

// Describe names the source for the log.
func (s TalosconfigSource) Describe() string { return "talosconfig " + s.Path }

// Load reads and checks the talosconfig. Every failure is permanent: the file
// is the operator's input and does not change by retrying. The machine type
// is always Unknown: a talosconfig does not say what this node is.
func (s TalosconfigSource) Load(ctx context.Context) (transport.MachineType, transport.Identity, error) {
	if err := ctx.Err(); err != nil {
		return transport.MachineTypeUnknown, nil, err
	}

	clock := s.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}

	warnAt := s.ExpiryWarning
	if warnAt <= 0 {
		warnAt = DefaultExpiryWarning
	}

	if s.Path == "" {
		return transport.MachineTypeUnknown, nil, backoff.Permanent(errors.New("talosconfig: no path given"))
	}

	// Read it ourselves: clientconfig.Open would create a missing file.
	data, err := readCapped(s.Path, maxTalosconfigSize, 0)
	if err != nil {
		return transport.MachineTypeUnknown, nil, backoff.Permanent(fmt.Errorf("talosconfig %s: %w", s.Path, err))
	}
	defer clear(data)

	id, warnings, err := identityFromTalosconfig(data, clock, warnAt)
	if err != nil {
		return transport.MachineTypeUnknown, nil, backoff.Permanent(fmt.Errorf("talosconfig %s: %w", s.Path, err))
	}

	for _, w := range warnings {
		s.Log.Warn().Str("talosconfig", s.Path).Str("context", id.context).Msg(w)
	}

	return transport.MachineTypeUnknown, id, nil
}

func identityFromTalosconfig(data []byte, clock clockwork.Clock, warnAt time.Duration) (*staticIdentity, []string, error) {
	cfg, err := clientconfig.FromBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}

	if cfg.Context == "" {
		return nil, nil, errors.New("no current context (context:)")
	}

	ctxCfg, ok := cfg.Contexts[cfg.Context]
	if !ok || ctxCfg == nil {
		return nil, nil, fmt.Errorf("current context %q is not defined under contexts", cfg.Context)
	}

	caPEM, err := decodeField(cfg.Context, "ca", ctxCfg.CA)
	if err != nil {
		return nil, nil, err
	}

	crtPEM, err := decodeField(cfg.Context, "crt", ctxCfg.Crt)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (Bootstrap needs an os:admin client certificate)", err)
	}

	keyPEM, err := decodeField(cfg.Context, "key", ctxCfg.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (Bootstrap needs an os:admin client certificate)", err)
	}
	defer clear(keyPEM)

	pool := stdx509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("context %q: ca holds no PEM certificate", cfg.Context)
	}

	cert, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("context %q: client certificate and key: %w", cfg.Context, err)
	}

	leaf, err := stdx509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("context %q: parse client certificate: %w", cfg.Context, err)
	}

	cert.Leaf = leaf

	warnings, err := checkClientCert(leaf, pool, clock.Now(), warnAt)
	if err != nil {
		return nil, nil, fmt.Errorf("context %q: %w", cfg.Context, err)
	}

	return &staticIdentity{clock: clock, cert: &cert, pool: pool, context: cfg.Context}, warnings, nil
}

func decodeField(contextName, field, value string) ([]byte, error) {
	if value == "" {
		return nil, fmt.Errorf("context %q has no %s", contextName, field)
	}

	decoded, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("context %q: %s is not base64: %w", contextName, field, err)
	}

	return decoded, nil
}

// checkClientCert refuses certificates apid would refuse for Bootstrap and
// reports (as warnings) what is merely suspicious.
func checkClientCert(leaf *stdx509.Certificate, pool *stdx509.CertPool, now time.Time, warnAt time.Duration) ([]string, error) {
	roles, _ := role.Parse(leaf.Subject.Organization)
	if !roles.Includes(role.Admin) {
		return nil, fmt.Errorf("client certificate roles %v lack %s (Bootstrap needs %s)", leaf.Subject.Organization, role.Admin, role.Admin)
	}

	if !slices.Equal(leaf.ExtKeyUsage, []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}) {
		return nil, fmt.Errorf("client certificate ExtKeyUsage %v: apid accepts only [ClientAuth]", leaf.ExtKeyUsage)
	}

	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("client certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	var warnings []string

	if left := leaf.NotAfter.Sub(now); left < warnAt {
		warnings = append(warnings, fmt.Sprintf("talosconfig client certificate expires in %s (at %s); it cannot be renewed",
			left.Round(time.Minute), leaf.NotAfter.UTC().Format(time.RFC3339)))
	}

	if now.Before(leaf.NotBefore) {
		warnings = append(warnings, fmt.Sprintf("talosconfig client certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
	}

	// Nodes verify the client certificate against the machine CA and its
	// accepted CAs, which may differ from the talosconfig's ca during a
	// rotation, so a mismatch is worth a warning, not a refusal.
	if _, err := leaf.Verify(stdx509.VerifyOptions{
		Roots:       pool,
		CurrentTime: leaf.NotBefore,
		KeyUsages:   []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	}); err != nil {
		warnings = append(warnings, fmt.Sprintf("talosconfig client certificate does not chain to the talosconfig's ca: %v", err))
	}

	return warnings, nil
}

// readCapped reads a regular file, refusing more than limit bytes. extraFlags
// are added to O_RDONLY (O_NOFOLLOW for files on STATE). Size and file-type
// refusals are permanent; open and read errors are returned as they are.
func readCapped(path string, limit int64, extraFlags int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|extraFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only

	info, err := f.Stat()
	if err != nil {
		return nil, err
	}

	if !info.Mode().IsRegular() {
		return nil, backoff.Permanent(fmt.Errorf("not a regular file (mode %s)", info.Mode()))
	}

	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}

	if int64(len(data)) > limit {
		clear(data)

		return nil, backoff.Permanent(fmt.Errorf("larger than %d bytes", limit))
	}

	return data, nil
}

// staticIdentity is a fixed client certificate from a talosconfig.
type staticIdentity struct {
	clock   clockwork.Clock
	cert    *tls.Certificate // Leaf is set
	pool    *stdx509.CertPool
	context string
}

var _ transport.Identity = (*staticIdentity)(nil)

// ClientCertificate returns the talosconfig's certificate, or an error once
// it has expired: a handshake with it would fail less clearly.
func (s *staticIdentity) ClientCertificate() (*tls.Certificate, error) {
	if now := s.clock.Now(); now.After(s.cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("talosconfig client certificate expired at %s", s.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	return s.cert, nil
}

func (s *staticIdentity) ClusterCA() *stdx509.CertPool { return s.pool.Clone() }

func (s *staticIdentity) String() string {
	return fmt.Sprintf("credentials.talosconfig{context: %q, cert: %s}", s.context, describeCert(s.cert.Leaf))
}

func (s *staticIdentity) GoString() string { return s.String() }

func (s *staticIdentity) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Context string `json:"context"`
		Cert    string `json:"cert"`
	}{s.context, describeCert(s.cert.Leaf)})
}
