package states

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// joinToken is in every endpoint the tests configure, and in no log line
// or status they expect.
const joinToken = "s3cr3t-join-token"

// configIdentity is an identity read from a machine config with a
// SideroLinkConfig document.
type configIdentity struct {
	transport.Identity

	api string
}

func (c configIdentity) SideroLinkAPI() string { return c.api }

// logged is what a session logged, one decoded JSON object a line.
func logged(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()

	var out []map[string]any

	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}

		out = append(out, m)
	}

	return out
}

// expectStoodDown checks that the run ended on a stand-down published with
// reason, said in exactly one log line, and leaked no join token.
func expectStoodDown(t *testing.T, event fsm.Event, err error, store *memStore, logs *bytes.Buffer, reason string) {
	t.Helper()

	if err != nil || event != fsm.StandDown {
		t.Fatalf("event %q, error %v; want %q", event, err, fsm.StandDown)
	}

	if st := store.last(t); st.StandDown != reason || st.Reason != reason {
		t.Fatalf("published standDown %q, reason %q; want %q", st.StandDown, st.Reason, reason)
	}

	var lines []map[string]any

	for _, l := range logged(t, logs) {
		if l["message"] == reason {
			lines = append(lines, l)
		}
	}

	if len(lines) != 1 {
		t.Fatalf("%d log lines say %q, want one:\n%s", len(lines), reason, logs)
	}

	if strings.Contains(logs.String(), joinToken) || strings.Contains(reason, joinToken) {
		t.Fatalf("the join token leaked:\n%s", logs)
	}
}

func TestConnectStandsDownOnEachSignal(t *testing.T) {
	errDenied := errors.New("read /host/proc/cmdline: permission denied")
	errLost := status.Error(codes.Unavailable, "connection reset")

	for _, tc := range []struct {
		name     string
		identity transport.Identity
		cmdline  string
		cmdErr   error
		resource string
		resErr   error
		saved    string // StandDown of the status file found
		// want: the reason published; "" goes on (Connected), unless
		// wantErr.
		want    string
		wantErr error
	}{
		{
			name:     "SideroLinkConfig document in the machine config",
			identity: configIdentity{api: "https://omni.example.com?jointoken=" + joinToken},
			want:     "SideroLink configured (SideroLinkConfig document in the machine config, apiUrl https://omni.example.com): Omni bootstraps this cluster",
		},
		{
			name:    "siderolink.api kernel argument",
			cmdline: "BOOT_IMAGE=/A/vmlinuz talos.platform=metal siderolink.api=grpc://omni.example.com:8090?jointoken=" + joinToken + " console=ttyS0\n",
			want:    "SideroLink configured (siderolink.api=grpc://omni.example.com:8090): Omni bootstraps this cluster",
		},
		{
			name:     "SiderolinkConfigs resource",
			resource: "10.5.0.1:8090?jointoken=" + joinToken,
			want:     "SideroLink configured (SiderolinkConfigs resource, apiEndpoint 10.5.0.1:8090): Omni bootstraps this cluster",
		},
		{
			// No signal now (a signal this daemon cannot read, or a
			// peer's): standing down stays.
			name: "stood down before", saved: "198.18.0.9 stood down: SideroLink configured (...): Omni bootstraps this cluster",
			want: "198.18.0.9 stood down: SideroLink configured (...): Omni bootstraps this cluster",
		},
		{name: "no signal", cmdline: "BOOT_IMAGE=/A/vmlinuz talos.platform=metal siderolink.apix=1"},
		{name: "a /proc without cmdline proves nothing", cmdErr: fs.ErrNotExist},
		{name: "an apid without COSI proves nothing", resErr: transport.ErrUnsupported},
		// Taken as "not managed", either would make a second bootstrapper
		// beside Omni: the state fails and is retried.
		{name: "kernel command line unreadable", cmdErr: errDenied, wantErr: errDenied},
		{name: "resource read failed", resErr: errLost, wantErr: errLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				self := newNode(1, "a1", time.Now().Add(-time.Hour))
				self.sideroLink = tc.resource
				self.errs = map[string]error{"SideroLinkEndpoint": tc.resErr}
				s, store, _ := newTestSession(self, 3)
				s.Network, s.identity = memNetwork{network: s.network}, tc.identity
				s.KernelCmdline = func() (string, error) { return tc.cmdline, tc.cmdErr }

				var logs bytes.Buffer
				s.Log = zerolog.New(&logs)

				if tc.saved != "" {
					st := election.MarkStoodDown(statusOf(self, 3), self.candidate().Incarnation, tc.saved)
					store.loaded = &st
				}

				event, err := s.Handlers()[fsm.Connect].Handle(t.Context())

				switch {
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) || len(store.saved) != 0 {
						t.Fatalf("error %v, %d statuses saved; want %v and nothing published", err, len(store.saved), tc.wantErr)
					}
				case tc.want == "":
					if err != nil || event != fsm.Connected || store.last(t).StandDown != "" {
						t.Fatalf("event %q, error %v, standDown %q; want connected", event, err, store.last(t).StandDown)
					}
				default:
					expectStoodDown(t, event, err, store, &logs, tc.want)
				}
			})
		})
	}
}

func TestKernelArg(t *testing.T) {
	for cmdline, want := range map[string]string{
		"siderolink.api=https://a siderolink.api=https://b": "https://a", // Talos takes the first
		"quiet siderolink.api=":                             "",
		"quiet siderolink.apiX=https://a":                   "",
		"":                                                  "",
	} {
		if got := kernelArg(cmdline, "siderolink.api"); got != want {
			t.Errorf("kernelArg(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

func TestWithoutSecrets(t *testing.T) {
	for endpoint, want := range map[string]string{
		"https://omni.example.com?jointoken=x":           "https://omni.example.com",
		"https://omni.example.com:443/?jointoken=x":      "https://omni.example.com:443",
		"grpc://user:pass@omni.example.com:8090?grpc=1":  "grpc://omni.example.com:8090",
		"10.5.0.1:8090?jointoken=x":                      "10.5.0.1:8090",
		"omni.example.com:8090?jointoken=x":              "omni.example.com:8090",
		"token@omni.example.com:8090?jointoken=x&other=": "omni.example.com:8090",
	} {
		if got := withoutSecrets(endpoint); got != want {
			t.Errorf("withoutSecrets(%q) = %q, want %q", endpoint, got, want)
		}
	}
}

// Every state that runs a protocol round ends the run when a peer's status
// says it stood down: nothing is sent, and the stand-down is published.
func TestProtocolStatesStandDownForAPeer(t *testing.T) {
	const omni = "SideroLink configured (siderolink.api=https://omni.example.com): Omni bootstraps this cluster"

	for _, tc := range []struct {
		state   fsm.State
		arrange func(tr *trio) // the trio: self announced intent 1, b and c locked to it
	}{
		{state: fsm.Elect, arrange: func(tr *trio) { tr.s.status = statusOf(tr.self, 3) }},
		{state: fsm.LeaderDelay},
		{state: fsm.FollowerWait, arrange: func(tr *trio) { tr.s.status = lockTo(statusOf(tr.self, 3), statusOf(tr.b, 3)) }},
		{state: fsm.Bootstrap, arrange: func(tr *trio) { tr.s.status = decideBootstrap(tr.s.status) }},
		{state: fsm.AwaitEtcd, arrange: func(tr *trio) {
			tr.s.status = decideBootstrap(tr.s.status)
			tr.s.status.BootstrapAt, tr.s.status.SendState = time.Now(), election.SendMayHaveArrived
		}},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				if tc.arrange != nil {
					tc.arrange(tr)
				}

				st := election.MarkStoodDown(statusOf(tr.c, 3), tr.c.candidate().Incarnation, omni)
				tr.c.publish(t, st)

				var logs bytes.Buffer
				tr.s.Log = zerolog.New(&logs)

				event, err := tr.s.Handlers()[tc.state].Handle(t.Context())
				expectStoodDown(t, event, err, tr.store, &logs, "198.18.0.3 stood down: "+omni)

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("%d Bootstrap calls", n)
				}
			})
		})
	}
}
