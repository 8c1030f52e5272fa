// testTimeout in this project's config only counts when jest runs here; from the repository root
// (one run over every workspace) it is a global option and ignored, leaving jest's 5 s default to
// tests that start real kernels. Setting it here holds in both.
jest.setTimeout(60000);
