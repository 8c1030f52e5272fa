import { defineConfig } from '@playwright/test';

// The README screenshots are a separate, opt-in job: they rewrite files under docs/img.
const screenshots = process.env.E2E_SCREENSHOTS === '1';

export default defineConfig({
  testDir: '.',
  testMatch: screenshots ? /\.(e2e|screenshots)\.ts$/ : /\.e2e\.ts$/,
  globalSetup: require.resolve('./global-setup'),
  outputDir: 'test-results',
  // One JupyterLab server and one kernel at a time keep a 2-core machine responsive.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 30_000 },
  // `list` ends with the plain `N passed` / `N failed` lines that scripts/test.sh sums.
  reporter: [['list']],
  use: {
    headless: true,
    video: 'off',
    trace: 'off',
    screenshot: 'only-on-failure',
    viewport: { width: 1280, height: 860 },
    launchOptions: {
      // Debian's Chromium, never a downloaded one: the suite must run where the package is all there is.
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
});
