#!/usr/bin/perl
# translate.pl IN OUT: a kernels/cuda source rewritten as C++ for the host emulation (emu.h).
# Only what C++ cannot parse changes, on the same lines (compiler messages name IN's lines):
#   kernel<<<grid, block[, shared[, stream]]>>>(args);  ->  ::duet_emu::Launch(grid, block...).call(kernel, args);
#   extern __shared__ T name[];                         ->  T* name = ::duet_emu::dynamic_shared<T>();
#   duet::cuda                                          ->  duet::cuda_emu
use strict;
use warnings;

my ($in, $out) = @ARGV;
die "usage: translate.pl IN OUT\n" unless defined $out;
open(my $f, '<', $in) or die "$in: $!\n";
my $s = do { local $/; <$f> };
close $f;

sub newlines { my $n = () = $_[0] =~ /\n/g; return "\n" x $n; }

$s =~ s/\bduet::cuda\b/duet::cuda_emu/g;
$s =~ s/extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;/$1* $2 = ::duet_emu::dynamic_shared<$1>();/g;
sub launch {
  my ($kernel, $config, $args, $all) = @_;
  s/\s*\n\s*/ /g for ($config, $args);  # one line, then the match's newlines: later lines keep their numbers
  return "::duet_emu::Launch($config).call($kernel, $args);" . newlines($all);
}
$s =~ s{([\w:]+(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;}{launch($1, $2, $3, $&)}gse;

open(my $o, '>', $out) or die "$out: $!\n";
print $o "#line 1 \"$in\"\n", $s;
close $o;
