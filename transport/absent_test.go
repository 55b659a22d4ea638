package transport

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Talos v1.7's Read and every version's List return the raw stat error,
// which reaches the client as Unknown; v1.8+ Read answers NotFound.
func TestClassifyNotFound(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{status.Error(codes.NotFound, "stat /var/lib/kommodity-autobootstrap/status.json: no such file or directory"), true},
		{status.Error(codes.Unknown, "stat /var/lib/kommodity-autobootstrap/status.json: no such file or directory"), true},
		{status.Error(codes.Unknown, "lstat /var/lib/etcd: no such file or directory"), true},
		{status.Error(codes.Unknown, "open /var/lib/kommodity-autobootstrap/status.json: permission denied"), false},
		{status.Error(codes.PermissionDenied, "not authorized"), false},
		{status.Error(codes.DeadlineExceeded, "no such file or directory"), false},
	}

	for _, c := range cases {
		err := classifyNotFound(c.err)
		if errors.Is(err, ErrNotFound) != c.want {
			t.Errorf("%v: ErrNotFound = %v, want %v", c.err, !c.want, c.want)
		}

		if status.Code(err) != status.Code(c.err) {
			t.Errorf("%v: the status code was lost", c.err)
		}
	}
}
