-- gitlockd for Neovim (0.7+): put in init.lua, or `:luafile gitlockd.lua`.
--   :GitlockdCommit [message]   commit this file now
--   :GitlockdLog                the file's last 20 commits
--   :GitlockdRestore {rev}      this file as it was at {rev} (e.g. HEAD~1), as a new commit
--   :GitlockdRestoreAt {dur}    this file as it was {dur} ago (e.g. 2h), as a new commit
--   :GitlockdUndo [commit]      revert a commit (default the last one) as a new commit
-- After a restore or undo the buffer is re-read (`:checktime`).
local function gitlockd(args)
  local out = vim.fn.system(vim.list_extend({ 'gitlockd' }, args))
  vim.api.nvim_echo({ { vim.trim(out) } }, true, {})
  return vim.v.shell_error
end

local function here()
  local file = vim.fn.expand('%:p')
  return file, vim.fn.fnamemodify(file, ':h')
end

vim.api.nvim_create_user_command('GitlockdCommit', function(opts)
  local file, dir = here()
  local args = { 'commit', dir }
  if opts.args ~= '' then
    vim.list_extend(args, { '-m', opts.args })
  end
  table.insert(args, file)
  gitlockd(args)
end, { nargs = '?' })

vim.api.nvim_create_user_command('GitlockdLog', function()
  local file, dir = here()
  gitlockd({ 'log', dir, file, '-n', '20' })
end, {})

vim.api.nvim_create_user_command('GitlockdRestore', function(opts)
  local file, dir = here()
  gitlockd({ 'restore', dir, file, '--rev', opts.args })
  vim.cmd('checktime')
end, { nargs = 1 })

vim.api.nvim_create_user_command('GitlockdRestoreAt', function(opts)
  local file, dir = here()
  gitlockd({ 'restore', dir, file, '--at', opts.args })
  vim.cmd('checktime')
end, { nargs = 1 })

vim.api.nvim_create_user_command('GitlockdUndo', function(opts)
  local _, dir = here()
  local args = { 'undo', dir }
  if opts.args ~= '' then
    table.insert(args, opts.args)
  end
  gitlockd(args)
  vim.cmd('checktime')
end, { nargs = '?' })
