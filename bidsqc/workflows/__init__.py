"""nipype workflow factories: the whole run, one participant, one anatomical image."""
