package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary builds the daemon once per test run, with a known version.
func binary(t *testing.T) string {
	t.Helper()

	out := filepath.Join(t.TempDir(), "daemon")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", out, ".")
	cmd.Stderr = os.Stderr

	if err := cmd.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}

	return out
}

// noSecretsNoState is the environment of a node with neither
// /system/secrets/etcd nor a STATE device, detection grace as given.
func noSecretsNoState(t *testing.T, grace string) []string {
	dir := t.TempDir()

	return []string{
		"TALOS_AUTO_BOOTSTRAP_SECRETS_DIR=" + dir,
		"TALOS_AUTO_BOOTSTRAP_STATE_DEVICES=" + filepath.Join(dir, "no-such-device"),
		"TALOS_AUTO_BOOTSTRAP_RUN_DIR=" + filepath.Join(dir, "run"),
		"TALOS_AUTO_BOOTSTRAP_DETECT_GRACE=" + grace,
	}
}

func messages(out []byte) []map[string]any {
	var lines []map[string]any

	for _, l := range bytes.Split(out, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			lines = append(lines, m)
		}
	}

	return lines
}

func TestExitCodes(t *testing.T) {
	bin := binary(t)

	t.Run("invalid value exits 2 naming the variable", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=three"}
		out, err := cmd.Output()

		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("exit = %v, want code 2; output:\n%s", err, out)
		}

		lines := messages(out)
		if len(lines) != 2 || lines[0]["msg"] != "starting kommodity-autobootstrap-extension" ||
			lines[1]["variable"] != "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES" || lines[1]["level"] != "error" {
			t.Fatalf("want one error line naming the variable, got:\n%s", out)
		}
	})

	t.Run("misspelt variable exits 2 naming it and the setting meant", func(t *testing.T) {
		cmd := exec.Command(bin)
		// QUORUM_NODES misspelt: ignored, it would leave a quorum of 1.
		cmd.Env = append(noSecretsNoState(t, "200ms"), "TALOS_AUTO_BOOTSTRAP_QUORUM_NODE=3")
		out, err := cmd.Output()

		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("exit = %v, want code 2; output:\n%s", err, out)
		}

		lines := messages(out)
		if len(lines) != 2 || lines[1]["variable"] != "TALOS_AUTO_BOOTSTRAP_QUORUM_NODE" || lines[1]["level"] != "error" ||
			!strings.Contains(lines[1]["error"].(string), "did you mean TALOS_AUTO_BOOTSTRAP_QUORUM_NODES?") {
			t.Fatalf("want one error line naming the variable and the setting meant, got:\n%s", out)
		}
	})

	t.Run("unusable talosconfig exits 2 naming the variable", func(t *testing.T) {
		cmd := exec.Command(bin)
		missing := filepath.Join(t.TempDir(), "talosconfig")
		cmd.Env = append(noSecretsNoState(t, "200ms"), "TALOS_AUTO_BOOTSTRAP_TALOSCONFIG="+missing)
		out, err := cmd.Output()

		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("exit = %v, want code 2; output:\n%s", err, out)
		}

		named := false
		for _, l := range messages(out) {
			named = named || (l["level"] == "error" && strings.Contains(fmt.Sprint(l["error"]), "TALOS_AUTO_BOOTSTRAP_TALOSCONFIG") &&
				strings.Contains(fmt.Sprint(l["error"]), missing))
		}

		if !named {
			t.Fatalf("no error line naming the variable and the file:\n%s", out)
		}
	})

	t.Run("no etcd secrets and no machine config: ends like a worker", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = noSecretsNoState(t, "200ms")

		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("exit = %v, want 0; output:\n%s", err, out)
		}

		var transitions []string

		for _, l := range messages(out) {
			if l["msg"] == "state transition" {
				transitions = append(transitions, l["from"].(string)+" -"+l["event"].(string)+"-> "+l["to"].(string))
			}
		}

		want := []string{"Detect -secrets_missing-> Credentials", "Credentials -worker_detected-> Done"}
		if strings.Join(transitions, ",") != strings.Join(want, ",") {
			t.Fatalf("transitions %v, want %v\n%s", transitions, want, out)
		}
	})

	t.Run("SIGTERM ends a waiting daemon promptly and non-zero", func(t *testing.T) {
		cmd := exec.Command(bin)
		// Credentials waits out a 10-minute detection grace period, the
		// kind of wait a signal must cut short.
		cmd.Env = noSecretsNoState(t, "10m")

		out := &lockedBuffer{}
		cmd.Stdout = out

		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}

		// Wait until it has started (its first log line), then signal.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "starting kommodity-autobootstrap-extension") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()

		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("daemon still running 10 s after SIGTERM:\n%s", out.String())
		}

		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("exit = %v, want code 1 (interrupted before completion)", err)
		}

		lines := messages(out.Bytes())
		if len(lines) == 0 || lines[0]["version"] != "v9.9.9-test" {
			t.Fatalf("first line must carry the injected version:\n%s", out.String())
		}

	})
}

// lockedBuffer is written by exec's copying goroutine while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

func (b *lockedBuffer) Bytes() []byte { return []byte(b.String()) }

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(binary(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}

	if got := string(out); got != "v9.9.9-test\n" {
		t.Errorf("--version printed %q", got)
	}
}
