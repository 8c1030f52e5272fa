// eslint for the TypeScript of every workspace and of the end-to-end tests (npm run lint:ts). Layout
// and wrapping are prettier's (.prettierrc.json); these rules are about what the code does.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig([
  // Build output, and the types gen-types.mjs writes from the schemas (a test compares them byte for byte).
  globalIgnores(['**/lib/', '**/node_modules/', 'schema/src/generated/', 'python/', 'tests/e2e/test-results/', 'tests/e2e/.runtime/']),
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: {
      parserOptions: {
        // Type information for the promise rules below; each workspace's test config covers its tests too.
        project: ['extension/tsconfig.test.json', 'kernel-bridge/tsconfig.test.json', 'schema/tsconfig.test.json', 'tests/e2e/tsconfig.json'],
        tsconfigRootDir: dirname(fileURLToPath(import.meta.url)),
      },
    },
    rules: {
      // A promise that nobody awaits says so with `void`; otherwise the rejection of a click handler,
      // a timer or a kernel message goes unseen.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // A leading underscore marks a parameter kept for its position or for what it documents.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Test doubles stand in for parts of large JupyterLab and kernel interfaces, and the browser tests
    // reach page globals (window.jupyterapp); typing them with `any` is the point there.
    files: ['**/*.test.ts', 'extension/src/testing/**', 'kernel-bridge/src/test-helpers.ts', 'tests/e2e/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
]);
