// The mtls-gateway web console: plain JavaScript over the public API, no framework, no build
// step. The token lives in sessionStorage only and is sent only in the Authorization header of
// same-origin fetch calls. Nothing here writes the token or a password to the console.
'use strict';

(() => {
  const TOKEN_KEY = 'mtls-console.token';
  const ACCOUNT_KEY = 'mtls-console.account';
  const PAGES = ['tester', 'certificates', 'mappings'];
  const DAY_MS = 24 * 60 * 60 * 1000;
  const EXPIRY_WARNING_DAYS = 30;
  const SERVICES = { 0: 'TEST_SERVICE', 1: 'IDP', 2: 'WEBHOOKS', 3: 'FAAS' };

  const KEY_TYPES = ['P-256', 'P-384', 'RSA-2048', 'RSA-3072'];

  const state = { token: null, claims: null, account: '', certificates: [], mappings: [], csr: null };

  const $ = (id) => document.getElementById(id);

  /** Builds an element: attributes (class, text, on*, aria-*, ...) and children (nodes or text). */
  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') element.className = value;
      else if (name === 'text') element.textContent = value;
      else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  // ---- token -------------------------------------------------------------------------------

  /** The JWT's payload, decoded without verification (the gateway verifies it on every call). */
  function decodeClaims(token) {
    const parts = token.split('.');
    if (parts.length !== 3 || parts.some((part) => !/^[A-Za-z0-9_-]*$/.test(part))) {
      throw new Error('This is not a JSON Web Token: it should be three base64url parts separated by dots.');
    }
    let claims;
    try {
      const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
      const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
      claims = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new Error('The token\'s payload cannot be read as JSON.');
    }
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) {
      throw new Error('The token\'s payload is not a JSON object.');
    }
    return claims;
  }

  function accountsOf(claims) {
    return Array.isArray(claims.accounts) ? claims.accounts.filter((a) => typeof a === 'string') : [];
  }

  const ACCOUNT_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

  // ---- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || `http_${status}`;
      this.requestId = error.requestId || '';
      this.items = Array.isArray(error.items) ? error.items : [];
    }
  }

  /**
   * One call to the gateway. The body is `json` (sent as JSON), `form` (multipart) or `plain`
   * (a string, with its Content-Type in `headers`). The answer is parsed as JSON, or returned as
   * text with `asText`.
   */
  async function api(method, path, { json, form, plain, headers, asText } = {}) {
    const init = {
      method,
      headers: { Authorization: `Bearer ${state.token}`, ...(headers || {}) },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (form) {
      init.body = form;
    } else if (plain !== undefined) {
      init.body = plain;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { code: 'network', message: 'the gateway could not be reached' });
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = new ApiError(
        response.status,
        (body && body.error) || { message: text.slice(0, 300) || response.statusText },
      );
      if (response.status === 401) {
        signOut('The gateway refused the token (it may have expired). Sign in again.');
      }
      throw error;
    }
    return asText ? text : body;
  }

  const accountPath = () => encodeURIComponent(state.account);
  const certificatesPath = () => `/mtls/account/${accountPath()}/certificates`;
  const certificatePath = (id) => `${certificatesPath()}/${encodeURIComponent(id)}`;
  const mappingsPath = (id) =>
    `/api/account/${accountPath()}/configuration/ac-common/mtls${id ? `/${encodeURIComponent(id)}` : ''}?v=3.0`;

  // ---- plain-language advice ---------------------------------------------------------------

  const ERROR_ADVICE = {
    p12_wrong_password: 'The password does not open this file. Check it for typos and the keyboard layout (passwords are case-sensitive). If the file was exported without a password, leave the field empty.',
    p12_malformed: 'This is not a PKCS#12 (.p12 or .pfx) file, or it is damaged. Export the certificate again together with its private key as PKCS#12; a PEM or DER certificate alone is not enough.',
    p12_no_private_key: 'The file holds no private key. Export it again and include the private key.',
    p12_no_certificate: 'The file holds a key but no certificate. Export it again and include the certificate.',
    p12_key_mismatch: 'No certificate in the file belongs to its private key. Export the key together with the certificate that was issued for it.',
    p12_multiple_keys: 'The file holds more than one private key. Export only the one client certificate and its key.',
    p12_unsupported_algorithm: 'The file uses an algorithm the gateway cannot read (named above). Export it again with current settings, such as the OpenSSL 3 defaults (AES-256 with PBKDF2).',
    p12_unsupported_key: 'This key type cannot be used here. Use RSA (2048 to 8192 bits), ECDSA P-256 or P-384, or Ed25519.',
    p12_too_costly: 'The file asks for more password-derivation work than the gateway allows. Export it again with an ordinary iteration count (OpenSSL uses 2048).',
    certificate_expired: 'The certificate has expired. Ask your certificate authority for a new one.',
    certificate_not_yet_valid: 'The certificate is not valid yet: its start date is in the future. Check the date, or wait until then.',
    payload_too_large: 'The file is larger than this gateway accepts.',
    missing_file: 'Choose a file first.',
    live_test_unavailable: 'This gateway version cannot call a URL from the tester yet. Clear the URL field to check the file alone.',
    invalid_url: 'Enter an absolute https URL, such as https://partner.example/api, without user name or #fragment.',
    invalid_forward_url: 'Enter an absolute https URL, such as https://partner.example/api.',
    egress_denied: 'The gateway may not call this address: it is private, loopback or otherwise not public (or plain http). Use the public https address of the server.',
    dns_failed: 'The host name could not be resolved. Check the host name in the URL.',
    connect_failed: 'The gateway could not open a connection to the server. Check the host and port, and that the server accepts connections from the gateway.',
    connect_timeout: 'The server did not accept the connection in time. Check the host and port, and any firewall between the gateway and the server.',
    tls_handshake_failed: 'The TLS handshake with the server failed. See the TLS stage for the alert the server sent.',
    client_certificate_rejected: 'The server rejected the client certificate. Check that the server trusts the issuer of your certificate and that it has not expired.',
    server_certificate_invalid: 'The server\'s certificate could not be verified (unknown issuer, wrong host name or expired). If the server uses a private CA, add that CA to the mapping (upstreamCaPem).',
    response_timeout: 'The server accepted the connection but did not answer in time.',
    connection_reset: 'The server closed the connection. Servers often do that when they refuse the client certificate.',
    name_conflict: 'Another certificate of this account already has this name. Choose another name, or replace that certificate.',
    mapping_conflict: 'A mapping with this name, or for the same service and URL, already exists.',
    unknown_certificate: 'The chosen certificate no longer exists. Refresh the page and choose another.',
    unknown_service: 'This service id is not known to the gateway.',
    certificate_in_use: 'Enabled mappings still use this certificate. Delete or disable them first, or delete anyway: that also disables those mappings.',
    forbidden: 'Your token does not allow this for this account (account or privilege missing).',
    rate_limited: 'Too many requests. Wait a moment and try again.',
    network: 'Check that the gateway is running and reachable from this browser.',
    dependency_unavailable: 'The gateway\'s database is not reachable right now. Try again later.',
    secret_store_unavailable: 'The gateway\'s secret store is not reachable right now. Try again later.',
    chain_key_mismatch: 'This certificate was issued for another key, not for the one the gateway made for this request. Send the CSR shown by Download CSR to your certificate authority and upload the certificate it issues for that CSR.',
    chain_order: 'The certificates do not link up. Put the certificate signed for the CSR first, then the certificate that issued it, then its issuer, and so on; leave out certificates of other chains.',
    certificate_usage: 'The certificate states its usages but not TLS client authentication. Ask your certificate authority to issue it with the client authentication extended key usage (clientAuth).',
    invalid_pem: 'This is not PEM text. Upload the certificates as PEM: blocks from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, the signed certificate first. Convert a DER file first, for example with openssl x509 -inform der -in cert.der -out cert.pem.',
  };

  const WARNING_ADVICE = {
    expires_soon: 'Plan the renewal now, then upload the new file with Replace on the Certificates page.',
    no_client_auth_usage: 'Servers that check the extended key usage will refuse it. Ask your certificate authority for a certificate with the TLS client authentication usage.',
    self_signed: 'Send it to the server\'s operator so that they add it to their trust store.',
    chain_incomplete: 'The server must already know the issuing CA; otherwise export the file again with the intermediate certificates.',
    chain_certificate_expired: 'Export the file again with the current intermediate certificate from your CA.',
    unrelated_certificates: 'They are not sent; nothing to do unless you expected them to be.',
    legacy_encryption: 'It works, but export it again with current encryption (AES-256 with PBKDF2) when you can.',
    no_integrity_mac: 'The file cannot be checked for tampering; export it again with a MAC when you can.',
    key_not_encrypted: 'Keep the file itself safe: anyone who has it has the key.',
  };

  // ---- formatting --------------------------------------------------------------------------

  function formatDate(text) {
    const time = Date.parse(text);
    if (Number.isNaN(time)) return text || '—';
    return new Date(time).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  /** Days from now until `text` (negative once past), or null. */
  function daysUntil(text) {
    const time = Date.parse(text);
    return Number.isNaN(time) ? null : Math.floor((time - Date.now()) / DAY_MS);
  }

  /** The expiry of a date: its text, a relative phrase and a class (expiry-ok, -soon, -past). */
  function expiry(text) {
    const days = daysUntil(text);
    if (days === null) return { text: formatDate(text), phrase: '', level: 'unknown' };
    if (Date.parse(text) <= Date.now()) {
      const ago = -days - 1;
      return { text: formatDate(text), phrase: ago < 1 ? 'expired today' : `expired ${ago} day${ago === 1 ? '' : 's'} ago`, level: 'past' };
    }
    const phrase = days < 1 ? 'expires within a day' : `in ${days} day${days === 1 ? '' : 's'}`;
    return { text: formatDate(text), phrase, level: days <= EXPIRY_WARNING_DAYS ? 'soon' : 'ok' };
  }

  function expiryCell(text) {
    const e = expiry(text);
    const marker = e.level === 'past' ? '✗ ' : e.level === 'soon' ? '⚠ ' : '';
    return h('span', { class: `expiry expiry-${e.level}` },
      h('span', { 'aria-hidden': 'true', text: marker }),
      e.text, e.phrase ? h('span', { class: 'expiry-phrase', text: ` (${e.phrase})` }) : null);
  }

  function serviceLabel(id) {
    return SERVICES[id] ? `${SERVICES[id]} (${id})` : `service ${id}`;
  }

  function clear(element) {
    element.replaceChildren();
  }

  function setStatus(element, kind, ...content) {
    element.replaceChildren(h('div', { class: `notice ${kind}` }, ...content));
  }

  /** An API error as a notice: what happened, the items, what to do, the request id. */
  function errorNotice(error, context) {
    const advice = ERROR_ADVICE[error.code];
    return h('div', { class: 'notice error' },
      h('p', { class: 'notice-title' },
        h('span', { class: 'icon', 'aria-hidden': 'true', text: '✗ ' }),
        context ? `${context}: ` : '', error.message),
      error.items.length
        ? h('ul', {}, error.items.map((item) => h('li', {}, item.message || item.code,
          h('span', { class: 'muted', text: ` (${item.code})` }))))
        : null,
      advice ? h('p', { class: 'advice-line' }, h('strong', { text: 'What to do: ' }), advice) : null,
      h('p', { class: 'muted small' }, `Code ${error.code}`,
        error.status ? `, HTTP ${error.status}` : '',
        error.requestId ? `, request id ${error.requestId}` : ''));
  }

  function showError(element, error, context) {
    if (!(error instanceof ApiError)) {
      element.replaceChildren(h('div', { class: 'notice error' }, String(error && error.message ? error.message : error)));
      return;
    }
    element.replaceChildren(errorNotice(error, context));
  }

  function requireAccount(element) {
    if (state.account) return true;
    setStatus(element, 'info', 'Choose an account at the top of the page first.');
    return false;
  }

  // ---- session -----------------------------------------------------------------------------

  function signIn(token) {
    const claims = decodeClaims(token);
    if (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
      throw new Error('This token has expired. Issue a new one.');
    }
    const accounts = accountsOf(claims);
    if (!accounts.length) throw new Error('This token names no account (its "accounts" claim is empty).');
    state.token = token;
    state.claims = claims;
    const saved = sessionStorage.getItem(ACCOUNT_KEY) || '';
    if (accounts.includes('*')) state.account = ACCOUNT_PATTERN.test(saved) ? saved : '';
    else state.account = accounts.includes(saved) ? saved : accounts[0];
    sessionStorage.setItem(TOKEN_KEY, token);
    if (state.account) sessionStorage.setItem(ACCOUNT_KEY, state.account);
    renderSession();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ACCOUNT_KEY);
    state.token = null;
    state.claims = null;
    state.account = '';
    state.certificates = [];
    state.mappings = [];
    for (const id of ['tester-result', 'certificates-status', 'certificates-list', 'mappings-status', 'mappings-list']) clear($(id));
    for (const id of ['tester-form', 'upload-form', 'replace-form', 'mapping-form', 'request-form']) $(id).reset();
    $('replace-form').hidden = true;
    closeCertificatePanels();
    $('session').hidden = true;
    $('nav').hidden = true;
    if (message) setStatus($('sign-in-status'), 'info', message);
    showPage('sign-in');
  }

  function renderSession() {
    const claims = state.claims;
    $('session-subject').textContent = typeof claims.sub === 'string' ? claims.sub : '(no subject)';
    $('session-expiry').textContent = typeof claims.exp === 'number'
      ? `token valid until ${formatDate(new Date(claims.exp * 1000).toISOString())}` : '';
    const accounts = accountsOf(claims);
    const any = accounts.includes('*');
    const select = $('account-select');
    select.replaceChildren(...accounts.map((account) => h('option', { value: account, text: account })));
    select.value = state.account;
    for (const id of ['account-select', 'account-select-label']) $(id).hidden = any;
    for (const id of ['account-input', 'account-input-label', 'account-apply']) $(id).hidden = !any;
    $('account-input').value = state.account;
    $('session').hidden = false;
    $('nav').hidden = false;
  }

  function chooseAccount(account) {
    if (!ACCOUNT_PATTERN.test(account)) return false;
    state.account = account;
    sessionStorage.setItem(ACCOUNT_KEY, account);
    state.certificates = [];
    state.mappings = [];
    clear($('tester-result'));
    closeCertificatePanels();
    route(false);
    return true;
  }

  // ---- navigation --------------------------------------------------------------------------

  function currentPage() {
    const name = location.hash.replace(/^#/, '');
    return PAGES.includes(name) ? name : 'tester';
  }

  function showPage(name) {
    for (const section of document.querySelectorAll('main > .page')) {
      section.hidden = section.id !== `page-${name}`;
    }
    for (const link of document.querySelectorAll('#nav a')) {
      if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = `${name === 'sign-in' ? 'Sign in' : name[0].toUpperCase() + name.slice(1)} · mtls-gateway console`;
  }

  /** Shows the page of the URL's fragment and loads its data; `focus` moves focus to its heading. */
  function route(focus) {
    if (!state.token) {
      showPage('sign-in');
      return;
    }
    const page = currentPage();
    showPage(page);
    if (focus) {
      const heading = document.querySelector(`#page-${page} h1`);
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
    if (page === 'certificates') loadCertificates();
    if (page === 'mappings') loadMappings();
    if (page === 'tester' && !state.account) requireAccount($('tester-result'));
  }

  // ---- tester ------------------------------------------------------------------------------

  async function onTest(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const result = $('tester-result');
    const file = $('tester-file').files[0];
    const password = $('tester-password').value;
    const url = $('tester-url').value.trim();
    $('tester-password').value = '';
    if (!requireAccount(result)) return;
    if (!file) {
      setStatus(result, 'error', 'Choose a PKCS#12 file to test.');
      return;
    }
    const body = new FormData();
    body.append('file', file, file.name);
    body.append('password', password);
    let path = `/mtls/account/${accountPath()}/p12-test/multipart`;
    const headers = {};
    if (url) {
      headers['LP-forward-url'] = url;
      path += '?report=true';
    }
    const button = $('tester-submit');
    button.disabled = true;
    setStatus(result, 'info', url ? `Testing ${file.name} against ${url}…` : `Testing ${file.name}…`);
    try {
      const report = await api('POST', path, { form: body, headers });
      result.replaceChildren(url ? liveReport(report, file.name) : fileReport(report, file.name));
    } catch (error) {
      result.replaceChildren(testerFailure(error, file.name));
    } finally {
      button.disabled = false;
      form.querySelector('#tester-password').value = '';
    }
  }

  function verdict(ok, title, detail) {
    return h('div', { class: `verdict ${ok ? 'ok' : 'bad'}` },
      h('span', { class: 'verdict-icon', 'aria-hidden': 'true', text: ok ? '✓' : '✗' }),
      h('div', {},
        h('p', { class: 'verdict-title', text: title }),
        detail ? h('p', { text: detail }) : null));
  }

  function stageRow(name, outcome, duration, details) {
    const labels = { passed: '✓ passed', failed: '✗ failed', skipped: '– not run' };
    return h('li', { class: `stage stage-${outcome}` },
      h('span', { class: 'stage-state' }, labels[outcome]),
      h('span', { class: 'stage-name', text: name }),
      h('span', { class: 'stage-duration', text: typeof duration === 'number' ? `${duration.toFixed(1)} ms` : '' }),
      h('div', { class: 'stage-details' }, details));
  }

  function adviceBlock(items) {
    if (!items.length) return null;
    return h('section', { class: 'advice', 'aria-label': 'Advice' },
      h('h3', { text: 'What to do' }),
      h('ul', {}, items.map((text) => h('li', { text }))));
  }

  function definitions(rows) {
    return h('dl', { class: 'facts' }, rows.filter(Boolean).flatMap(([term, value]) => [
      h('dt', { text: term }),
      h('dd', {}, value === undefined || value === null || value === '' ? '—' : value),
    ]));
  }

  function yesNo(value, yes, no) {
    if (value === true) return yes || 'yes';
    if (value === false) return no || 'no';
    return '—';
  }

  function fileFacts(report) {
    const protection = report.protection || {};
    return definitions([
      ['Subject', h('code', { text: report.subject })],
      ['Issuer', h('code', { text: report.issuer })],
      ['Valid from', formatDate(report.notBefore)],
      ['Valid until', expiryCell(report.notAfter)],
      ['Key', `${report.keyType}${report.keySize ? ` (${report.keySize} bits)` : ''}`],
      ['Client authentication usage', yesNo(report.hasClientAuthUsage, 'yes', 'no: servers that check it will refuse the certificate')],
      ['Chain sent', `${report.chainLength} certificate${report.chainLength === 1 ? '' : 's'} (the leaf and ${report.chainLength - 1} more)`],
      report.chain && report.chain.length
        ? ['Chain', h('ol', { class: 'chain' }, report.chain.map((element) =>
          h('li', {}, h('code', { text: element.subject }),
            h('span', { class: 'muted', text: ` until ${formatDate(element.notAfter)}${element.selfSigned ? ', self-signed root' : ''}` }))))]
        : null,
      ['Serial number', h('code', { text: report.serialNumber })],
      ['SHA-256 fingerprint', h('code', { class: 'wrap', text: report.fingerprintSha256 })],
      ['Key encryption', (protection.keyEncryption || []).join('; ')],
      ['Certificate encryption', (protection.certificateEncryption || []).join('; ')],
      ['Integrity MAC', protection.mac || 'none'],
    ]);
  }

  function warningsBlock(warnings) {
    if (!warnings || !warnings.length) return null;
    return h('section', { class: 'warnings', 'aria-label': 'Warnings' },
      h('h3', { text: 'Warnings' }),
      h('ul', {}, warnings.map((warning) => h('li', {},
        h('span', { 'aria-hidden': 'true', text: '⚠ ' }),
        h('strong', { text: /[.!?]$/.test(warning.message) ? warning.message : `${warning.message}.` }),
        WARNING_ADVICE[warning.code] ? ` ${WARNING_ADVICE[warning.code]}` : '',
        h('span', { class: 'muted', text: ` (${warning.code})` })))));
  }

  function fileReport(report, fileName) {
    const warnings = report.warnings || [];
    return h('article', { class: 'report', 'aria-label': `Report for ${fileName}` },
      h('h2', { text: `Report for ${fileName}` }),
      verdict(report.usable !== false,
        report.usable !== false ? 'Usable' : 'Not usable',
        report.usable !== false
          ? `The file opens, its key matches the certificate, and the certificate is valid now${warnings.length ? ', with the warnings below' : ''}.`
          : ''),
      h('ol', { class: 'stages' },
        stageRow('File', report.usable !== false ? 'passed' : 'failed', null,
          `${report.keyType}, valid until ${formatDate(report.notAfter)}`)),
      warningsBlock(warnings),
      fileFacts(report));
  }

  const STAGE_NAMES = { file: 'File', dns: 'DNS lookup', connect: 'TCP connection', tls: 'TLS handshake', http: 'HTTP request' };

  function stageDetails(stage) {
    const rows = [];
    if (stage.stage === 'dns') rows.push(['Addresses', (stage.addresses || []).join(', ')]);
    if (stage.stage === 'connect') rows.push(['Address', stage.address]);
    if (stage.stage === 'tls') {
      if (stage.version) rows.push(['Protocol', `${stage.version}${stage.cipherSuite ? `, ${stage.cipherSuite}` : ''}${stage.alpn ? `, ALPN ${stage.alpn}` : ''}`]);
      rows.push(['Server certificate', stage.serverCertificateVerified === false
        ? `not verified${stage.serverCertificateError ? `: ${stage.serverCertificateError}` : ''}`
        : yesNo(stage.serverCertificateVerified, 'verified')]);
      if (stage.serverChain && stage.serverChain.length) {
        rows.push(['Server chain', h('ol', { class: 'chain' }, stage.serverChain.map((c) =>
          h('li', {}, h('code', { text: c.subject || '(unreadable certificate)' }), c.issuer ? h('span', { class: 'muted', text: ` issued by ${c.issuer}, until ${formatDate(c.notAfter)}` }) : null)))]);
      }
      rows.push(['Client certificate requested', yesNo(stage.clientCertificateRequested)]);
      if (stage.acceptableIssuers && stage.acceptableIssuers.length) {
        rows.push(['Issuers the server accepts', h('ul', { class: 'plain' }, stage.acceptableIssuers.map((issuer) => h('li', {}, h('code', { text: issuer }))))]);
      }
      rows.push(['Client certificate offered', yesNo(stage.clientCertificateOffered)]);
      if (stage.clientCertificateOffered === false && stage.serverSignatureSchemes && stage.serverSignatureSchemes.length) {
        rows.push(['Signature schemes the server accepts', stage.serverSignatureSchemes.join(', ')]);
      }
      if (stage.clientCertificateIssuerAccepted !== undefined && stage.clientCertificateIssuerAccepted !== null) {
        rows.push(['Your issuer accepted', yesNo(stage.clientCertificateIssuerAccepted)]);
      }
      if (stage.alert) rows.push(['Alert from the server', h('code', { text: stage.alert })]);
    }
    if (stage.stage === 'http') {
      rows.push(['Status', stage.status]);
      const headers = Object.entries(stage.headers || {});
      if (headers.length) {
        rows.push(['Headers', h('ul', { class: 'plain' }, headers.map(([name, value]) => h('li', {}, h('code', { text: `${name}: ${value}` }))))]);
      }
    }
    if (stage.error) rows.push(['Error', stage.error]);
    return definitions(rows);
  }

  /** Advice derived from the stages, for a report whose own advice list is empty. */
  function derivedAdvice(report) {
    const advice = [];
    const tls = (report.stages || []).find((stage) => stage.stage === 'tls');
    if (tls) {
      if (tls.serverCertificateVerified === false) {
        advice.push(`The server's certificate could not be verified${tls.serverCertificateError ? ` (${tls.serverCertificateError})` : ''}. If the server uses a private CA, add that CA to the mapping.`);
      }
      if (tls.clientCertificateRequested === false) {
        advice.push('The server did not ask for a client certificate, so none was sent. Check that mutual TLS is enabled for this URL on the server.');
      }
      if (tls.clientCertificateIssuerAccepted === false) {
        const issuers = tls.acceptableIssuers || [];
        advice.push(`The server does not trust your issuer; it accepts certificates from: ${issuers.length ? issuers.join('; ') : '(the server did not say)'}.`);
      }
    }
    if (!advice.length && report.failedStage && report.failedStage !== 'tls') {
      const failed = (report.stages || []).find((stage) => stage.stage === report.failedStage);
      if (failed && failed.error) advice.push(failed.error);
    }
    return advice;
  }

  function liveReport(report, fileName) {
    const ok = report.outcome === 'ok';
    const failedStage = report.failedStage;
    const stages = Array.isArray(report.stages) ? report.stages : [];
    const byName = new Map(stages.map((stage) => [stage.stage, stage]));
    const rows = [stageRow('File', failedStage === 'file' ? 'failed' : 'passed', null,
      report.file ? `${report.file.keyType}, valid until ${formatDate(report.file.notAfter)}` : '')];
    for (const name of ['dns', 'connect', 'tls', 'http']) {
      const stage = byName.get(name);
      if (!stage) {
        rows.push(stageRow(STAGE_NAMES[name], 'skipped', null, 'an earlier stage failed'));
        continue;
      }
      rows.push(stageRow(STAGE_NAMES[name], stage.ok ? 'passed' : 'failed', stage.durationMs, stageDetails(stage)));
    }
    const advice = Array.isArray(report.advice) && report.advice.length ? report.advice : derivedAdvice(report);
    const failedName = STAGE_NAMES[failedStage] || failedStage;
    return h('article', { class: 'report', 'aria-label': `Report for ${fileName}` },
      h('h2', { text: `Report for ${fileName}` }),
      verdict(ok, ok ? 'The call succeeded' : `The call failed at the ${failedName || 'unknown'} stage`,
        ok ? 'The server accepted the client certificate and answered.'
          : (report.failure && report.failure.message) || ''),
      adviceBlock(advice),
      h('h3', { text: 'Stages' }),
      h('ol', { class: 'stages' }, rows),
      report.file ? warningsBlock(report.file.warnings) : null,
      report.file ? h('details', { class: 'file-details' }, h('summary', { text: 'The file' }), fileFacts(report.file)) : null);
  }

  function testerFailure(error, fileName) {
    if (!(error instanceof ApiError)) return h('div', { class: 'notice error', text: String(error) });
    if (error.code === 'live_test_unavailable') {
      return h('div', { class: 'notice warn' },
        h('p', { class: 'notice-title', text: 'The live test is not available on this gateway' }),
        h('p', { text: ERROR_ADVICE.live_test_unavailable }),
        h('p', { class: 'muted small', text: `Code ${error.code}, request id ${error.requestId}` }));
    }
    const fileProblem = error.code.startsWith('p12_') || error.code.startsWith('certificate_') || error.code === 'payload_too_large';
    if (!fileProblem) return errorNotice(error, 'The test could not run');
    const advice = ERROR_ADVICE[error.code];
    return h('article', { class: 'report', 'aria-label': `Report for ${fileName}` },
      h('h2', { text: `Report for ${fileName}` }),
      verdict(false, 'Not usable', error.message),
      adviceBlock(advice ? [advice] : []),
      h('ol', { class: 'stages' }, stageRow('File', 'failed', null, `${error.message} (${error.code})`)),
      h('p', { class: 'muted small', text: `Request id ${error.requestId}` }));
  }

  // ---- certificates ------------------------------------------------------------------------

  async function fetchCertificates() {
    const list = await api('GET', certificatesPath());
    state.certificates = Array.isArray(list) ? list : [];
    return state.certificates;
  }

  async function loadCertificates() {
    const listElement = $('certificates-list');
    if (!requireAccount($('certificates-status'))) {
      clear(listElement);
      return;
    }
    try {
      renderCertificates(await fetchCertificates());
    } catch (error) {
      clear(listElement);
      showError($('certificates-status'), error, 'The certificates could not be listed');
    }
  }

  function statusBadge(status) {
    const kinds = { Available: ['ok', '✓'], Expired: ['bad', '✗'], UnAvailable: ['warn', '!'], Pending: ['pending', '…'] };
    const [kind, icon] = kinds[status] || ['warn', '?'];
    return h('span', { class: `badge badge-${kind}` }, h('span', { 'aria-hidden': 'true', text: `${icon} ` }), status === 'UnAvailable' ? 'Unavailable' : status);
  }

  /** The renewal of a certificate in words, or null when it has none. */
  function renewalLine(certificate) {
    const renewal = certificate.renewal;
    if (!renewal || typeof renewal !== 'object') return null;
    const text = renewal.status === 'Scheduled'
      ? `Renewal scheduled: switches at ${formatDate(renewal.activateAt)}`
      : 'Renewal pending: waiting for its signed chain';
    return h('div', { class: 'renewal small' }, h('span', { 'aria-hidden': 'true', text: '↻ ' }), text);
  }

  function certificateActions(certificate) {
    const name = certificate.name;
    const button = (label, accessibleName, onclick, kind) =>
      h('button', { type: 'button', class: `${kind || 'secondary'} small-button`, 'aria-label': accessibleName, text: label, onclick });
    const main = certificate.status === 'Pending'
      ? [
        button('Download CSR', `Download CSR for ${name}`, () => downloadCsr(certificate, false)),
        button('Upload signed chain', `Upload signed chain for ${name}`, () => openChain(certificate, false)),
      ]
      : [
        button('Replace', `Replace ${name}`, () => openReplace(certificate)),
        certificate.renewal ? null : button('Renew', `Renew ${name}`, () => openRenew(certificate)),
      ];
    const renewal = certificate.renewal
      ? h('div', { class: 'actions renewal-actions', role: 'group', 'aria-label': `Renewal of ${name}` },
        button('Download renewal CSR', `Download renewal CSR for ${name}`, () => downloadCsr(certificate, true)),
        button('Upload renewal chain', `Upload renewal chain for ${name}`, () => openChain(certificate, true)),
        button('Cancel renewal', `Cancel renewal of ${name}`, () => confirmCancelRenewal(certificate), 'danger'))
      : null;
    return [
      h('div', { class: 'actions' }, main, button('Delete', `Delete ${name}`, () => confirmDeleteCertificate(certificate), 'danger')),
      renewal,
    ];
  }

  function renderCertificates(certificates) {
    const listElement = $('certificates-list');
    if (!certificates.length) {
      listElement.replaceChildren(h('p', { class: 'empty', text: 'No certificates yet. Upload or request one above.' }));
      return;
    }
    const sorted = [...certificates].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    listElement.replaceChildren(h('table', { class: 'table', 'aria-labelledby': 'certificates-list-title' },
      h('thead', {}, h('tr', {}, ['Name', 'Status', 'Expires', 'Subject and issuer', 'Key', 'Version', 'Actions'].map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, sorted.map((certificate) => h('tr', { 'data-id': certificate.id },
        h('th', { scope: 'row' }, h('span', { class: 'name', text: certificate.name }), h('div', { class: 'muted small', text: `id ${certificate.id}` })),
        h('td', {}, statusBadge(certificate.status), renewalLine(certificate)),
        h('td', {}, certificate.status === 'Pending' && !certificate.expirationDate
          ? h('span', { class: 'muted', text: 'not signed yet' })
          : expiryCell(certificate.expirationDate)),
        h('td', {}, h('div', {}, h('code', { text: certificate.subject || '' })),
          certificate.issuer ? h('div', { class: 'muted small' }, 'issued by ', h('code', { text: certificate.issuer })) : null),
        h('td', { text: certificate.keyType || '' }),
        h('td', { text: certificate.version === undefined ? '' : String(certificate.version) }),
        h('td', {}, certificateActions(certificate)))))));
  }

  function saveSummary(result, verb) {
    const saved = (result && result.successfulySavedCertificates) || [];
    const failed = (result && result.failedSaveToVaultCertificates) || [];
    const parts = [];
    if (saved.length) parts.push(`${verb} ${saved.map((c) => `${c.name} (id ${c.id})`).join(', ')}.`);
    if (failed.length) {
      return ['warn', `${parts.join(' ')} The secret store failed for ${failed.map((c) => c.name).join(', ')}: the certificate is listed as Unavailable until you replace it.`];
    }
    return ['ok', parts.join(' ') || `${verb}.`];
  }

  async function onUpload(event) {
    event.preventDefault();
    const status = $('certificates-status');
    const file = $('upload-file').files[0];
    const name = $('upload-name').value.trim();
    const password = $('upload-password').value;
    $('upload-password').value = '';
    if (!requireAccount(status)) return;
    if (!file || !name) {
      setStatus(status, 'error', 'Choose a file and give the certificate a name.');
      return;
    }
    const body = new FormData();
    body.append('file', file, file.name);
    body.append('certificate', JSON.stringify({ name, password }));
    setStatus(status, 'info', `Uploading ${name}…`);
    try {
      const result = await api('POST', `${certificatesPath()}/by-file`, { form: body });
      const [kind, text] = saveSummary(result, 'Uploaded');
      setStatus(status, kind, text);
      $('upload-form').reset();
    } catch (error) {
      showError(status, error, `${name} was not uploaded`);
    }
    await loadCertificates().catch(() => {});
  }

  function openReplace(certificate) {
    const form = $('replace-form');
    form.dataset.id = String(certificate.id);
    $('replace-title').textContent = `Replace ${certificate.name}`;
    $('replace-name').value = certificate.name;
    $('replace-password').value = '';
    $('replace-file').value = '';
    form.hidden = false;
    $('replace-file').focus();
  }

  function closeReplace() {
    const form = $('replace-form');
    form.reset();
    form.hidden = true;
    delete form.dataset.id;
  }

  async function onReplace(event) {
    event.preventDefault();
    const status = $('certificates-status');
    const id = Number($('replace-form').dataset.id);
    const file = $('replace-file').files[0];
    const name = $('replace-name').value.trim();
    const password = $('replace-password').value;
    $('replace-password').value = '';
    if (!file || !name || !id) {
      setStatus(status, 'error', 'Choose the new file and keep a name.');
      return;
    }
    const body = new FormData();
    body.append('file', file, file.name);
    body.append('certificate', JSON.stringify({ id, name, password }));
    setStatus(status, 'info', `Replacing ${name}…`);
    try {
      const result = await api('PUT', `${certificatesPath()}/by-file`, { form: body });
      const [kind, text] = saveSummary(result, 'Replaced');
      setStatus(status, kind, text);
      closeReplace();
    } catch (error) {
      showError(status, error, `${name} was not replaced`);
    }
    await loadCertificates().catch(() => {});
  }

  /** An inline confirmation in `element`: a question and two buttons; focus on the first. */
  function askConfirmation(element, kind, content, confirmLabel, onConfirm, dismissLabel) {
    const confirm = h('button', { type: 'button', class: 'danger', text: confirmLabel });
    const cancel = h('button', { type: 'button', class: 'secondary', text: dismissLabel || 'Cancel', onclick: () => clear(element) });
    confirm.addEventListener('click', () => {
      confirm.disabled = true;
      onConfirm();
    });
    element.replaceChildren(h('div', { class: `notice ${kind} confirm` }, content, h('div', { class: 'actions' }, confirm, cancel)));
    confirm.focus();
  }

  function confirmDeleteCertificate(certificate) {
    askConfirmation($('certificates-status'), 'warn',
      h('p', { text: `Delete ${certificate.name}? Its key is destroyed in the secret store; this cannot be undone.` }),
      `Delete ${certificate.name}`, () => deleteCertificate(certificate, false));
  }

  async function deleteCertificate(certificate, force) {
    const status = $('certificates-status');
    try {
      await api('DELETE', `${certificatesPath()}/${encodeURIComponent(certificate.id)}${force ? '?force=true' : ''}`);
      setStatus(status, 'ok', `Deleted ${certificate.name}.`);
    } catch (error) {
      if (error instanceof ApiError && error.code === 'certificate_in_use' && !force) {
        askConfirmation(status, 'warn',
          h('div', {}, h('p', { class: 'notice-title', text: `${certificate.name} is in use` }),
            h('p', { text: error.message }),
            h('p', { text: 'Delete anyway disables those mappings too.' })),
          'Delete anyway', () => deleteCertificate(certificate, true));
        return;
      }
      showError(status, error, `${certificate.name} was not deleted`);
    }
    await loadCertificates().catch(() => {});
  }

  // ---- keys made by the gateway: requests, chains, renewals (SPEC 4.6) ----------------------

  /** `a, b` or one per line, as an array of non-empty names. */
  function splitNames(text) {
    return text.split(/[\n,]/).map((name) => name.trim()).filter(Boolean);
  }

  /** A file name made of the certificate's name: letters, digits, dot, dash, underscore. */
  function fileNameOf(name, suffix) {
    const base = String(name).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '') || 'certificate';
    return `${base}${suffix}`;
  }

  /** Saves `text` as a file through an object URL (same origin, allowed by the page's policy). */
  function saveText(fileName, type, text) {
    const address = URL.createObjectURL(new Blob([text], { type }));
    const link = h('a', { href: address, download: fileName, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(address), 60_000);
  }

  /** Shows a CSR with Copy and Download; `renewal` tells which upload it is waiting for. */
  function showCsr(certificate, csr, renewal) {
    state.csr = { text: csr, fileName: fileNameOf(certificate.name, renewal ? '-renewal.csr' : '.csr') };
    $('csr-title').textContent = renewal
      ? `Renewal request for ${certificate.name}`
      : `Certificate signing request for ${certificate.name}`;
    $('csr-hint').textContent = `Send this CSR to your certificate authority; the private key stays in the gateway. `
      + `When the authority has signed it, choose ${renewal ? 'Upload renewal chain' : 'Upload signed chain'} for ${certificate.name} in the list below.`
      + (renewal ? ' The current certificate stays in use until then.' : '');
    $('csr-pem').value = csr;
    clear($('csr-status'));
    $('csr-panel').hidden = false;
    const title = $('csr-title');
    title.setAttribute('tabindex', '-1');
    title.focus();
  }

  function closeCsr() {
    state.csr = null;
    $('csr-title').textContent = 'Certificate signing request';
    $('csr-hint').textContent = 'Send this CSR to your certificate authority.';
    $('csr-pem').value = '';
    clear($('csr-status'));
    $('csr-panel').hidden = true;
  }

  async function copyCsr() {
    const status = $('csr-status');
    const field = $('csr-pem');
    try {
      await navigator.clipboard.writeText(field.value);
      setStatus(status, 'ok', 'Copied the CSR to the clipboard.');
    } catch {
      // No clipboard API (a page served over plain http on another host) or no permission.
      field.focus();
      field.select();
      let copied = false;
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
      setStatus(status, copied ? 'ok' : 'info', copied
        ? 'Copied the CSR to the clipboard.'
        : 'This browser did not allow copying. The CSR is selected: press Ctrl+C (⌘C on a Mac).');
    }
  }

  function downloadShownCsr() {
    if (!state.csr) return;
    saveText(state.csr.fileName, 'application/pkcs10', state.csr.text);
    setStatus($('csr-status'), 'ok', `Saved ${state.csr.fileName} to your downloads.`);
  }

  /** After a panel closes: focus on the list's heading, so that the keyboard is not lost. */
  function focusCertificateList() {
    const heading = $('certificates-list-title');
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }

  function closeCertificatePanels() {
    closeCsr();
    closeRenew();
    closeChain();
  }

  async function onRequest(event) {
    event.preventDefault();
    const status = $('certificates-status');
    if (!requireAccount(status)) return;
    const name = $('request-name').value.trim();
    const subject = $('request-subject').value.trim();
    const keyType = $('request-key-type').value;
    const subjectAltNames = splitNames($('request-sans').value);
    if (!name || !subject) {
      setStatus(status, 'error', 'Give the certificate a name and a subject, such as CN=brand-a,O=Brand A.');
      return;
    }
    const body = { name, subject, keyType: KEY_TYPES.includes(keyType) ? keyType : 'P-256' };
    if (subjectAltNames.length) body.subjectAltNames = subjectAltNames;
    const button = $('request-submit');
    button.disabled = true;
    closeCertificatePanels();
    setStatus(status, 'info', `Making a ${body.keyType} key and a CSR for ${name}…`);
    try {
      const created = await api('POST', `${certificatesPath()}/requests`, { json: body });
      const certificate = { ...(created || {}), name: (created && created.name) || name };
      setStatus(status, 'ok', `Requested ${certificate.name}${certificate.id === undefined ? '' : ` (id ${certificate.id})`}: `
        + 'its key was made in the gateway and is listed as Pending until you upload the signed chain.');
      $('request-form').reset();
      if (created && typeof created.csr === 'string') showCsr(certificate, created.csr, false);
    } catch (error) {
      showError(status, error, `${name} was not requested`);
    } finally {
      button.disabled = false;
    }
    await loadCertificates().catch(() => {});
  }

  /** `GET .../csr` or `.../renewal/csr`: shows the CSR and saves it as a file. */
  async function downloadCsr(certificate, renewal) {
    const status = $('certificates-status');
    const path = `${certificatePath(certificate.id)}${renewal ? '/renewal/csr' : '/csr'}`;
    try {
      const csr = await api('GET', path, { asText: true, headers: { Accept: 'application/pkcs10, text/plain' } });
      clear(status);
      showCsr(certificate, csr, renewal);
      downloadShownCsr();
    } catch (error) {
      showError(status, error, `The ${renewal ? 'renewal ' : ''}CSR of ${certificate.name} could not be read`);
    }
  }

  function openRenew(certificate) {
    closeChain();
    const form = $('renew-form');
    form.reset();
    form.dataset.id = String(certificate.id);
    form.dataset.name = certificate.name;
    $('renew-title').textContent = `Renew ${certificate.name}`;
    $('renew-subject').placeholder = certificate.subject || 'CN=brand-a,O=Brand A';
    form.hidden = false;
    $('renew-key-type').focus();
  }

  function closeRenew() {
    const form = $('renew-form');
    form.reset();
    form.hidden = true;
    delete form.dataset.id;
    delete form.dataset.name;
  }

  async function onRenew(event) {
    event.preventDefault();
    const status = $('certificates-status');
    const form = $('renew-form');
    const id = form.dataset.id;
    const name = form.dataset.name || `id ${id}`;
    if (!id) return;
    const body = {};
    const keyType = $('renew-key-type').value;
    const subject = $('renew-subject').value.trim();
    if (KEY_TYPES.includes(keyType)) body.keyType = keyType;
    if (subject) body.subject = subject;
    const button = $('renew-submit');
    button.disabled = true;
    setStatus(status, 'info', `Making a new key and a CSR for ${name}…`);
    try {
      const answer = await api('POST', `${certificatePath(id)}/renewal`, { json: body });
      setStatus(status, 'ok', `Renewal of ${name} requested: a new key was made; the current certificate stays in use until you upload the renewal chain.`);
      closeRenew();
      if (answer && typeof answer.csr === 'string') showCsr({ id, name }, answer.csr, true);
    } catch (error) {
      showError(status, error, `${name} was not renewed`);
    } finally {
      button.disabled = false;
    }
    await loadCertificates().catch(() => {});
  }

  function openChain(certificate, renewal) {
    closeRenew();
    const form = $('chain-form');
    form.reset();
    form.dataset.id = String(certificate.id);
    form.dataset.name = certificate.name;
    form.dataset.mode = renewal ? 'renewal' : 'chain';
    $('chain-title').textContent = renewal
      ? `Upload the renewal chain for ${certificate.name}`
      : `Upload the signed chain for ${certificate.name}`;
    for (const id of ['chain-activate-at-label', 'chain-activate-at-field']) $(id).hidden = !renewal;
    form.hidden = false;
    $('chain-file').focus();
  }

  function closeChain() {
    const form = $('chain-form');
    form.reset();
    form.hidden = true;
    delete form.dataset.id;
    delete form.dataset.name;
    delete form.dataset.mode;
  }

  /** A `datetime-local` value (the browser's time zone) as RFC 3339 UTC without fractions. */
  function activateAtOf(value) {
    const time = new Date(value).getTime();
    return Number.isNaN(time) ? null : new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  async function onChain(event) {
    event.preventDefault();
    const status = $('certificates-status');
    const form = $('chain-form');
    const id = form.dataset.id;
    const name = form.dataset.name || `id ${id}`;
    const renewal = form.dataset.mode === 'renewal';
    if (!id) return;
    const file = $('chain-file').files[0];
    let pem = $('chain-pem').value.trim();
    if (file) {
      try {
        pem = await file.text();
      } catch {
        setStatus(status, 'error', `${file.name} could not be read.`);
        return;
      }
    }
    if (!pem.trim()) {
      setStatus(status, 'error', 'Choose the PEM file your certificate authority sent, or paste its text.');
      $('chain-file').focus();
      return;
    }
    let path = `${certificatePath(id)}${renewal ? '/renewal/chain' : '/chain'}`;
    let activateAt = null;
    const when = renewal ? $('chain-activate-at').value : '';
    if (when) {
      activateAt = activateAtOf(when);
      if (!activateAt || Date.parse(activateAt) <= Date.now()) {
        setStatus(status, 'error', 'Choose a switch time in the future, or leave it empty to switch at once.');
        $('chain-activate-at').setAttribute('aria-invalid', 'true');
        $('chain-activate-at').focus();
        return;
      }
      path += `?activateAt=${encodeURIComponent(activateAt)}`;
    }
    $('chain-activate-at').removeAttribute('aria-invalid');
    const button = $('chain-submit');
    button.disabled = true;
    setStatus(status, 'info', `Uploading the ${renewal ? 'renewal ' : ''}chain for ${name}…`);
    try {
      const entity = await api('PUT', path, { plain: pem, headers: { 'Content-Type': 'application/x-pem-file' } });
      const version = entity && entity.version !== undefined ? ` (version ${entity.version})` : '';
      let message;
      if (!renewal) message = `${name} is signed and ${entity && entity.status ? entity.status : 'Available'}${version}.`;
      else if (activateAt) message = `${name} switches to the renewed certificate at ${formatDate(activateAt)}; the current one stays in use until then.`;
      else message = `${name} switched to the renewed certificate${version}.`;
      setStatus(status, 'ok', message);
      closeChain();
      closeCsr();
    } catch (error) {
      showError(status, error, `The ${renewal ? 'renewal ' : ''}chain for ${name} was not accepted`);
    } finally {
      button.disabled = false;
    }
    await loadCertificates().catch(() => {});
  }

  function confirmCancelRenewal(certificate) {
    askConfirmation($('certificates-status'), 'warn',
      h('p', { text: `Cancel the renewal of ${certificate.name}? Its new key is destroyed; the current certificate stays in use.` }),
      `Cancel renewal of ${certificate.name}`, async () => {
        const status = $('certificates-status');
        try {
          await api('DELETE', `${certificatePath(certificate.id)}/renewal`);
          setStatus(status, 'ok', `Cancelled the renewal of ${certificate.name}.`);
          closeCertificatePanels();
        } catch (error) {
          showError(status, error, `The renewal of ${certificate.name} was not cancelled`);
        }
        await loadCertificates().catch(() => {});
      }, 'Keep the renewal');
  }

  // ---- mappings ----------------------------------------------------------------------------

  async function loadMappings() {
    const listElement = $('mappings-list');
    const status = $('mappings-status');
    if (!requireAccount(status)) {
      clear(listElement);
      return;
    }
    try {
      const [certificates, mappings] = await Promise.all([fetchCertificates(), api('GET', mappingsPath())]);
      state.mappings = Array.isArray(mappings) ? mappings : [];
      renderCertificateChoices(certificates);
      renderMappings(state.mappings);
    } catch (error) {
      clear(listElement);
      showError(status, error, 'The mappings could not be listed');
    }
  }

  function renderCertificateChoices(certificates) {
    const select = $('mapping-certificate');
    const previous = select.value;
    const live = certificates.filter((certificate) => !certificate.deleted);
    if (!live.length) {
      select.replaceChildren(h('option', { value: '', text: 'No certificates: upload one first' }));
      return;
    }
    select.replaceChildren(...live.map((certificate) =>
      h('option', { value: String(certificate.id), text: `${certificate.name} (${certificate.status === 'UnAvailable' ? 'Unavailable' : certificate.status})` })));
    if (live.some((certificate) => String(certificate.id) === previous)) select.value = previous;
  }

  function certificateName(id) {
    const certificate = state.certificates.find((c) => String(c.id) === String(id));
    return certificate ? certificate.name : `id ${id}`;
  }

  function renderMappings(mappings) {
    const listElement = $('mappings-list');
    const live = mappings.filter((mapping) => !mapping.deleted);
    if (!live.length) {
      listElement.replaceChildren(h('p', { class: 'empty', text: 'No mappings yet. Create one above.' }));
      return;
    }
    const sorted = [...live].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    listElement.replaceChildren(h('table', { class: 'table', 'aria-labelledby': 'mappings-list-title' },
      h('thead', {}, h('tr', {}, ['Name', 'Service', 'URL', 'Certificate', 'State', 'Actions'].map((title) => h('th', { scope: 'col', text: title })))),
      h('tbody', {}, sorted.map((mapping) => h('tr', { 'data-id': mapping.id },
        h('th', { scope: 'row' }, h('span', { class: 'name', text: mapping.name }), h('div', { class: 'muted small', text: `id ${mapping.id}` })),
        h('td', { text: serviceLabel(mapping.serviceId) }),
        h('td', {}, h('code', { class: 'wrap', text: mapping.url })),
        h('td', { text: certificateName(mapping.certificationId) }),
        h('td', {}, mapping.enable
          ? h('span', { class: 'badge badge-ok' }, h('span', { 'aria-hidden': 'true', text: '● ' }), 'Enabled')
          : h('span', { class: 'badge badge-off' }, h('span', { 'aria-hidden': 'true', text: '○ ' }), 'Disabled')),
        h('td', {}, h('div', { class: 'actions' },
          h('button', {
            type: 'button', class: 'secondary small-button', 'aria-label': `${mapping.enable ? 'Disable' : 'Enable'} ${mapping.name}`,
            text: mapping.enable ? 'Disable' : 'Enable', onclick: (event) => toggleMapping(mapping, event.currentTarget),
          }),
          h('button', { type: 'button', class: 'danger small-button', 'aria-label': `Delete ${mapping.name}`, text: 'Delete', onclick: () => confirmDeleteMapping(mapping) }))))))));
  }

  function onServiceChange() {
    const other = $('mapping-service').value === 'other';
    $('mapping-service-other').hidden = !other;
    $('mapping-service-other-label').hidden = !other;
    $('mapping-service-other').required = other;
  }

  async function onCreateMapping(event) {
    event.preventDefault();
    const status = $('mappings-status');
    if (!requireAccount(status)) return;
    const service = $('mapping-service').value === 'other' ? $('mapping-service-other').value.trim() : $('mapping-service').value;
    const mapping = {
      name: $('mapping-name').value.trim(),
      certificationId: $('mapping-certificate').value,
      serviceId: service,
      url: $('mapping-url').value.trim(),
      siteId: state.account,
      enable: $('mapping-enable').checked,
    };
    if (!mapping.certificationId) {
      setStatus(status, 'error', 'Upload a certificate first, then choose it here.');
      return;
    }
    setStatus(status, 'info', `Creating ${mapping.name}…`);
    try {
      const created = await api('POST', mappingsPath(), { json: [mapping] });
      const names = (Array.isArray(created) ? created : []).map((m) => `${m.name} (id ${m.id})`).join(', ');
      setStatus(status, 'ok', `Created mapping ${names || mapping.name}.`);
      $('mapping-name').value = '';
      $('mapping-url').value = '';
    } catch (error) {
      showError(status, error, `${mapping.name} was not created`);
    }
    await loadMappings().catch(() => {});
  }

  async function toggleMapping(mapping, button) {
    const status = $('mappings-status');
    const { id, deleted, ...fields } = mapping;
    const enable = !mapping.enable;
    button.disabled = true;
    try {
      await api('PUT', mappingsPath(id), { json: { ...fields, enable } });
      setStatus(status, 'ok', `${enable ? 'Enabled' : 'Disabled'} ${mapping.name}.`);
    } catch (error) {
      showError(status, error, `${mapping.name} was not ${enable ? 'enabled' : 'disabled'}`);
    }
    await loadMappings().catch(() => {});
    const again = document.querySelector(`#mappings-list tr[data-id="${CSS.escape(String(id))}"] button`);
    if (again) again.focus();
  }

  function confirmDeleteMapping(mapping) {
    askConfirmation($('mappings-status'), 'warn',
      h('p', { text: `Delete mapping ${mapping.name}? Calls to ${mapping.url} will no longer present a certificate.` }),
      `Delete ${mapping.name}`, async () => {
        try {
          await api('DELETE', mappingsPath(mapping.id));
          setStatus($('mappings-status'), 'ok', `Deleted mapping ${mapping.name}.`);
        } catch (error) {
          showError($('mappings-status'), error, `${mapping.name} was not deleted`);
        }
        await loadMappings().catch(() => {});
      });
  }

  // ---- start -------------------------------------------------------------------------------

  function start() {
    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const field = $('token');
      const token = field.value.replace(/\s+/g, '').replace(/^Bearer/i, '');
      field.value = '';
      try {
        signIn(token);
        clear($('sign-in-status'));
        if (!location.hash || !PAGES.includes(location.hash.slice(1))) history.replaceState(null, '', '#tester');
        route(true);
      } catch (error) {
        setStatus($('sign-in-status'), 'error', error.message);
        field.focus();
      }
    });
    $('sign-out').addEventListener('click', () => {
      signOut('Signed out. The token was removed from this tab.');
      $('token').focus();
    });
    $('account-select').addEventListener('change', (event) => chooseAccount(event.currentTarget.value));
    $('account-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const value = $('account-input').value.trim();
      if (!chooseAccount(value)) {
        $('account-input').setAttribute('aria-invalid', 'true');
        $('account-input').focus();
      } else {
        $('account-input').removeAttribute('aria-invalid');
      }
    });
    $('tester-form').addEventListener('submit', onTest);
    $('upload-form').addEventListener('submit', onUpload);
    $('replace-form').addEventListener('submit', onReplace);
    $('replace-cancel').addEventListener('click', closeReplace);
    $('certificates-refresh').addEventListener('click', () => loadCertificates());
    $('request-form').addEventListener('submit', onRequest);
    $('renew-form').addEventListener('submit', onRenew);
    $('renew-cancel').addEventListener('click', () => { closeRenew(); focusCertificateList(); });
    $('chain-form').addEventListener('submit', onChain);
    $('chain-cancel').addEventListener('click', () => { closeChain(); focusCertificateList(); });
    $('csr-copy').addEventListener('click', copyCsr);
    $('csr-download').addEventListener('click', downloadShownCsr);
    $('csr-close').addEventListener('click', () => { closeCsr(); focusCertificateList(); });
    $('mapping-form').addEventListener('submit', onCreateMapping);
    $('mapping-service').addEventListener('change', onServiceChange);
    $('mappings-refresh').addEventListener('click', () => loadMappings());
    window.addEventListener('hashchange', () => route(true));

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        signIn(saved);
      } catch (error) {
        signOut(error.message);
        return;
      }
    }
    route(false);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
