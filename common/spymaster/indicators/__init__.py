"""Pure indicator maths over arrays: bars, order flow, dealer exposure, Black-76 and trajectory shape."""
