package imagebuild_test

import (
	"bytes"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

// checkSBOM parses one platform's SPDX document with the SPDX project's
// library and holds it against the Go build information of the binary in
// the same image.
func checkSBOM(t *testing.T, arch string, raw, binary []byte) {
	t.Helper()

	doc, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: parse SPDX document: %v", arch, err)
	}

	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("%s: %v", arch, err)
	}

	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" {
		t.Errorf("%s: %s, data license %s", arch, doc.SPDXVersion, doc.DataLicense)
	}

	if want := imagebuild.SourceURL + "/spdx/" + testVersion + "/" + testRevision + "/linux-" + arch; doc.DocumentNamespace != want {
		t.Errorf("%s: namespace %s, want %s", arch, doc.DocumentNamespace, want)
	}

	if doc.CreationInfo == nil || doc.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("%s: creation info %+v, want created at SOURCE_DATE_EPOCH", arch, doc.CreationInfo)
	}

	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 {
		t.Fatalf("%s: described packages %v %v, want the extension alone", arch, described, err)
	}

	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		t.Fatal(err)
	}

	type listed struct {
		version, purl, checksum string
	}

	byName := map[string]listed{}

	for _, p := range doc.Packages {
		if _, dup := byName[p.PackageName]; dup {
			t.Errorf("%s: package %q listed twice (Talos would keep one)", arch, p.PackageName)
		}

		l := listed{version: p.PackageVersion}

		for _, ref := range p.PackageExternalReferences {
			if ref.RefType == common.TypePackageManagerPURL {
				l.purl = ref.Locator
			}
		}

		for _, c := range p.PackageChecksums {
			if c.Algorithm == common.SHA256 {
				l.checksum = c.Value
			}
		}

		byName[p.PackageName] = l

		if p.PackageSPDXIdentifier == described[0] {
			want := listed{version: testVersion, purl: "pkg:golang/github.com/kommodity-io/kommodity-autobootstrap-extension@" + testVersion}
			if p.PackageName != imagebuild.ExtensionName || l != want || p.PackageLicenseDeclared != "Apache-2.0" {
				t.Errorf("%s: top package %q %+v license %q", arch, p.PackageName, l, p.PackageLicenseDeclared)
			}

			continue
		}

		// A bare module path would overwrite Talos's own SBOM item.
		if !strings.HasSuffix(p.PackageName, imagebuild.SBOMNameSuffix) {
			t.Errorf("%s: package %q lacks the suffix %q", arch, p.PackageName, imagebuild.SBOMNameSuffix)
		}
	}

	for _, dep := range info.Deps {
		m := dep
		if dep.Replace != nil {
			m = dep.Replace
		}

		got, ok := byName[dep.Path+imagebuild.SBOMNameSuffix]
		if !ok {
			t.Errorf("%s: module %s compiled in, not in the SBOM", arch, dep.Path)

			continue
		}

		sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(m.Sum, "h1:"))
		if err != nil {
			t.Fatal(err)
		}

		want := listed{version: m.Version, purl: "pkg:golang/" + m.Path + "@" + strings.ReplaceAll(m.Version, "+", "%2B"), checksum: hex.EncodeToString(sum)}
		if got != want {
			t.Errorf("%s: %s listed as %+v, want %+v", arch, dep.Path, got, want)
		}
	}

	if len(doc.Packages) != len(info.Deps)+2 { // the extension, the standard library
		t.Errorf("%s: %d packages for %d modules", arch, len(doc.Packages), len(info.Deps))
	}

	if std := byName["stdlib"+imagebuild.SBOMNameSuffix]; std.version != info.GoVersion {
		t.Errorf("%s: stdlib %+v, binary built with %s", arch, std, info.GoVersion)
	}

	// What Talos's SBOMItemController reads (a reduced decode, keyed by name).
	var talos struct {
		Packages []struct {
			Name    string `json:"name"`
			Version string `json:"versionInfo"`
			License string `json:"licenseDeclared"`
		} `json:"packages"`
	}

	if err := json.Unmarshal(raw, &talos); err != nil || len(talos.Packages) != len(doc.Packages) {
		t.Errorf("%s: Talos's reduced decode: %d packages, %v", arch, len(talos.Packages), err)
	}

	t.Logf("linux/%s SBOM: %d packages (%d modules)", arch, len(doc.Packages), len(info.Deps))
}

func TestSBOMRefusesBadInput(t *testing.T) {
	bins := binaries(t)
	in := input(bins, testVersion, epoch)

	if _, err := imagebuild.SBOM(in, imagebuild.Platform{Arch: "amd64", Binary: []byte("not a Go binary")}); err == nil {
		t.Error("a binary without Go build information was accepted")
	}

	in.Revision = "main"
	if _, err := imagebuild.SBOM(in, imagebuild.Platform{Arch: "amd64", Binary: bins["amd64"]}); err == nil {
		t.Error("a revision that is no commit hash was accepted")
	}
}
