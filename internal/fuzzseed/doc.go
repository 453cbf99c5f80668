// Package fuzzseed keeps the checked-in test data of the store packages in
// step with the code that produces it: the seed corpora of their fuzz
// targets, in testdata/fuzz/<FuzzName>/ as "go test fuzz v1" files, and
// their golden files in testdata.
//
// Only tests import it. Each test package defines its own -update flag and
// passes its value: with it set, Check and Golden rewrite the files before
// comparing them.
package fuzzseed
