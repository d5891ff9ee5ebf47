"""`{% load people %}{{ user|person }}`: a person as the portal names them (accounts.people)."""

from django import template

from accounts import people

register = template.Library()
register.filter("person", people.person)
