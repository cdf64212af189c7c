# prove(1) runs this with JAMC (the jamc binary) and JAMC_SERVER set: tests/conformance.rs.
exec $ENV{JAMC}, "--conformance", "--strict", $ENV{JAMC_SERVER} or die "cannot run $ENV{JAMC}: $!\n";
