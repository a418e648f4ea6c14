'use strict'
// Loads the native addon built by `napi build --platform` for this machine.

const { join } = require('node:path')
const { existsSync, readFileSync } = require('node:fs')

function isMusl() {
  if (process.platform !== 'linux') return false
  try {
    return readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
    return Boolean(report && !report.header?.glibcVersionRuntime)
  }
}

function triple() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const file = join(__dirname, '..', `orchestra.${triple()}.node`)
if (!existsSync(file)) {
  throw new Error(
    `orchestra-sdk: native addon not found at ${file}. ` +
      'Build it with `npm run build` in the orchestra-sdk package (needs a Rust toolchain).',
  )
}

module.exports = require(file)
