package upstream

import "testing"

func TestLoadCAFileEmptyMeansSystemRoots(t *testing.T) {
	pool, err := LoadCAFile("")
	if err != nil || pool != nil {
		t.Fatalf("LoadCAFile(\"\") = %v, %v; want nil, nil (system roots)", pool, err)
	}
	if _, err := LoadCAFile("/nonexistent/ca.pem"); err == nil {
		t.Fatal("missing ca_file accepted")
	}
}
