-- gitlockd for Neovim (0.7+): put in init.lua, or `:luafile gitlockd.lua`.
--   :GitlockdCommit [message]   commit this file now
--   :GitlockdLog                the file's last 20 commits
local function gitlockd(args)
  local out = vim.fn.system(vim.list_extend({ 'gitlockd' }, args))
  vim.api.nvim_echo({ { vim.trim(out) } }, true, {})
  return vim.v.shell_error
end

vim.api.nvim_create_user_command('GitlockdCommit', function(opts)
  local file = vim.fn.expand('%:p')
  local args = { 'commit', vim.fn.fnamemodify(file, ':h') }
  if opts.args ~= '' then
    vim.list_extend(args, { '-m', opts.args })
  end
  table.insert(args, file)
  gitlockd(args)
end, { nargs = '?' })

vim.api.nvim_create_user_command('GitlockdLog', function()
  local file = vim.fn.expand('%:p')
  gitlockd({ 'log', vim.fn.fnamemodify(file, ':h'), file, '-n', '20' })
end, {})
