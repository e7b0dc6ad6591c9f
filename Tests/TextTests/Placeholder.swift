// Tests of this module land here.
