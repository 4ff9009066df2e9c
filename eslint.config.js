// ESLint (flat config): the recommended rules of ESLint and typescript-eslint over the
// TypeScript sources and tests, plus the size limits the house keeps (a file per role, no
// function over a screenful or two). Types are checked by tsc (`pnpm lint` runs both).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: ['dist/', 'native/', 'npm/', 'target/', '.release/', '.vitest-tmp/', 'node_modules/', 'bench/', 'scripts/', 'crates/'],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // A leading underscore marks a name that is there on purpose: an omitted key in a rest
      // destructuring (`const { score: _s, ...rest } = m`) or a hook parameter a subclass may use.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['ts/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 600, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 120, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read the servers' replies as untyped JSON and assert on their fields; typing each
      // reply would restate the protocol types the assertions are there to check.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
