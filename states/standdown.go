package states

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/constants"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// errStoodDown ends the run once this node has published that it stands
// down: whichever state found it, the handler's error reaches
// endsOnStandDown before any state acts on the decision.
var errStoodDown = errors.New("stood down")

// endsOnStandDown makes a stand-down of h's state end the run (exit 0),
// with the one log line that says why.
func (s *Session) endsOnStandDown(h fsm.HandlerFunc) fsm.Handler {
	return fsm.HandlerFunc(func(ctx context.Context) (fsm.Event, error) {
		event, err := h(ctx)
		if errors.Is(err, errStoodDown) {
			s.Log.Info().Str("phase", string(s.status.Phase)).Msg(s.status.StandDown)

			return fsm.StandDown, nil
		}

		return event, err
	})
}

// standDown publishes that this node stands down for reason, and ends the
// run.
func (s *Session) standDown(reason string) error {
	if err := s.persist(election.MarkStoodDown(s.status, s.status.Incarnation, reason)); err != nil {
		return err
	}

	return errStoodDown
}

// sideroLinkConfig is an identity read from a machine config
// (credentials.MachineIdentity): the apiUrl of its SideroLinkConfig
// document, "" without one.
type sideroLinkConfig interface {
	SideroLinkAPI() string
}

// sideroLinkSignal names what Talos shows of a SideroLink connection on
// this machine, "" when it shows none. Omni connects every machine it
// manages that way, and bootstraps every cluster it manages. Talos says so
// in three places, and each one is enough: the machine config's
// SideroLinkConfig document, the siderolink.api kernel argument, and the
// SiderolinkConfigs resource Talos writes from either. Endpoints are named
// without their query (Omni's join token rides in it).
//
// A signal that cannot be read is an error, not "not managed": taken as
// that, it would make this daemon a second bootstrapper beside Omni, and
// the operator expects the machine to stand down. Only what proves nothing
// is skipped: a /proc without cmdline (a test or the demo; Talos always
// has one) and an apid without COSI.
func (s *Session) sideroLinkSignal(ctx context.Context) (string, error) {
	if c, ok := s.identity.(sideroLinkConfig); ok && c.SideroLinkAPI() != "" {
		return "SideroLinkConfig document in the machine config, apiUrl " + withoutSecrets(c.SideroLinkAPI()), nil
	}

	if s.KernelCmdline != nil {
		cmdline, err := s.KernelCmdline()

		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.Log.Debug().Err(err).Msg("no kernel command line to read, not checked for " + constants.KernelParamSideroLink)
		case err != nil:
			return "", fmt.Errorf("read kernel command line for %s: %w", constants.KernelParamSideroLink, err)
		default:
			if api := kernelArg(cmdline, constants.KernelParamSideroLink); api != "" {
				return constants.KernelParamSideroLink + "=" + withoutSecrets(api), nil
			}
		}
	}

	reader, ok := s.local.(transport.SideroLinkReader)
	if !ok {
		return "", nil
	}

	api, err := reader.SideroLinkEndpoint(ctx)

	switch {
	case errors.Is(err, transport.ErrUnsupported):
		// An apid without COSI is older than any Talos this extension
		// runs on; the two other signals were checked.
		s.Log.Debug().Err(err).Msg("SideroLink resource unavailable, relying on the machine config and the kernel command line")

		return "", nil
	case err != nil:
		return "", fmt.Errorf("read SideroLink configuration: %w", err)
	case api != "":
		return "SiderolinkConfigs resource, apiEndpoint " + withoutSecrets(api), nil
	}

	return "", nil
}

// kernelArg is the value of name=value on a kernel command line, "" when
// it has none. The first one counts, as Talos takes it (procfs
// Cmdline.Get(...).First()), and an empty value configures nothing there.
func kernelArg(cmdline, name string) string {
	for _, field := range strings.Fields(cmdline) {
		if value, ok := strings.CutPrefix(field, name+"="); ok {
			return value
		}
	}

	return ""
}

// withoutSecrets keeps scheme and host of a SideroLink endpoint: its query
// holds Omni's join token, and user info would be a credential too.
func withoutSecrets(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}

	// host:port without a scheme, as Talos also accepts it.
	endpoint, _, _ = strings.Cut(endpoint, "?")
	if _, host, ok := strings.Cut(endpoint, "@"); ok {
		endpoint = host
	}

	return endpoint
}
